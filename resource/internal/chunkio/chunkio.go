// Package chunkio reads a stored object by chunk for the content-addressed
// stores over a bucket.Bucket (resource/blobstore, resource/sealed): an
// Object seeks and reads by chunk, and its Source checks each chunk before
// any byte of it is returned (resource.Object), so a Range read fetches and
// checks only the chunks it needs.
package chunkio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/bucket"
)

// ChunkSize is the unit of checking: 64 KiB of plain bytes.
const ChunkSize = 64 << 10

// Source reads the checked chunks of one stored object. An Object closes a
// Source that is an io.Closer with itself.
type Source interface {
	// Chunk returns chunk idx, read through c into dst (ChunkSize bytes
	// long) and checked; an error wraps resource.ErrDamaged when the
	// stored chunk is damaged, and then no byte of dst is returned.
	Chunk(c *Cursor, idx int64, dst []byte) ([]byte, error)
	// Span is where the stored bytes of chunks [from, to) lie in the
	// object, so that a Cursor opens one read for all of them.
	Span(from, to int64) (off, end int64)
}

// ChunkLen is the length of chunk idx of a resource of size bytes.
func ChunkLen(idx, size int64) int64 { return min(ChunkSize, size-idx*ChunkSize) }

// NumChunks is how many chunks hold size bytes (none for the empty
// resource).
func NumChunks(size int64) int64 { return (size + ChunkSize - 1) / ChunkSize }

// Cursor reads byte ranges of one object, keeping one stream open while the
// reads follow each other, so that a sequential read of a large object on S3
// is one GET, not one per chunk.
type Cursor struct {
	ctx  context.Context
	b    bucket.Bucket
	name string
	f    bucket.File // when set, reads are ReadAt on it, and there is no stream
	r    io.ReadCloser
	pos  int64 // r's next byte is at pos
	end  int64 // and r ends at end
	// limit is where a new stream ends: the end of the span being read.
	limit int64
	// scratch is Scratch's buffer, from the pool, until Close.
	scratch *[]byte
}

// ScratchSize is the length of a Cursor's Scratch: a chunk and 64 bytes
// (a sealed chunk's tag, a nonce).
const ScratchSize = ChunkSize + 64

// bufs recycles chunk buffers, so that opening a resource, or sealing one,
// costs no new 64 KiB.
var bufs = sync.Pool{New: func() any { b := make([]byte, ScratchSize); return &b }}

// Scratch returns ScratchSize bytes for the Source's use (one chunk's stored
// bytes), the same until Close.
func (c *Cursor) Scratch() []byte {
	if c.scratch == nil {
		c.scratch = bufs.Get().(*[]byte)
	}
	return *c.scratch
}

// GetBuf and PutBuf lend ScratchSize-byte buffers.
func GetBuf() *[]byte  { return bufs.Get().(*[]byte) }
func PutBuf(b *[]byte) { bufs.Put(b) }

// NewCursor returns a cursor on the object name of b, whose streams end at
// limit; or, when f is set, a cursor that reads f at the offsets asked.
func NewCursor(ctx context.Context, b bucket.Bucket, name string, f bucket.File, limit int64) *Cursor {
	return &Cursor{ctx: ctx, b: b, name: name, f: f, limit: limit}
}

// ReadFull fills p from the object's byte off. A short object yields
// io.ErrUnexpectedEOF (the caller's to call damage).
func (c *Cursor) ReadFull(p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	if c.f != nil {
		n, err := c.f.ReadAt(p, off)
		if n == len(p) {
			return nil
		}
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	end := off + int64(len(p))
	if c.r == nil || c.pos != off || end > c.end {
		c.closeStream()
		lim := max(c.limit, end)
		r, err := c.b.Read(c.ctx, c.name, off, lim-off)
		if err != nil {
			// The object may be shorter than the span, not than the
			// bytes asked: then those are read, and the cut found where
			// it is.
			a, serr := c.b.Stat(c.ctx, c.name)
			if serr != nil || a.Size < end || a.Size >= lim {
				return c.short(end, err)
			}
			lim = a.Size
			if r, err = c.b.Read(c.ctx, c.name, off, lim-off); err != nil {
				return c.short(end, err)
			}
		}
		c.r, c.pos, c.end = r, off, lim
	}
	n, err := io.ReadFull(c.r, p)
	c.pos += int64(n)
	if err != nil {
		c.closeStream()
		return c.short(end, err)
	}
	return nil
}

// short tells a stored object that is shorter than the bytes asked (it was
// cut: io.ErrUnexpectedEOF, which the Sources call damage) from a stream
// that failed or ended early (a network error: returned as it is, since it
// says nothing of the copy) or an object removed meanwhile; the object's
// size as the bucket states it now decides.
func (c *Cursor) short(end int64, err error) error {
	a, serr := c.b.Stat(c.ctx, c.name)
	switch {
	case errors.Is(serr, bucket.ErrNotExist):
		return fmt.Errorf("the object was removed while being read: %w", serr)
	case serr == nil && a.Size < end:
		return fmt.Errorf("%w: the object holds %d bytes, %d expected", io.ErrUnexpectedEOF, a.Size, end)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("the stream ended early: %v", err)
	}
	return err
}

func (c *Cursor) closeStream() {
	if c.r != nil {
		c.r.Close()
		c.r = nil
	}
}

// Close closes the open stream, if any, and gives Scratch back.
func (c *Cursor) Close() {
	c.closeStream()
	if c.scratch != nil {
		bufs.Put(c.scratch)
		c.scratch = nil
	}
}

// Object is a resource.Object over a Source.
type Object struct {
	ctx   context.Context
	b     bucket.Bucket
	name  string
	f     bucket.File // or nil
	src   Source
	info  resource.Info
	pos   int64
	cur   int64 // the chunk in plain, or -1
	plain []byte
	buf   *[]byte
	c     *Cursor // the sequential reader's; nil once closed
}

// NewObject returns the Object of the stored object name of b, holding the
// resource of info. Its reads run under ctx, on f when it is set (the
// Object then owns f and closes it), else on streams of b.
func NewObject(ctx context.Context, b bucket.Bucket, name string, f bucket.File, src Source, info resource.Info) *Object {
	_, end := src.Span(0, NumChunks(info.Size))
	return &Object{ctx: ctx, b: b, name: name, f: f, src: src, info: info, cur: -1,
		buf: GetBuf(), c: NewCursor(ctx, b, name, f, end)}
}

// Info implements resource.Object.
func (o *Object) Info() resource.Info { return o.info }

// Read implements io.Reader.
func (o *Object) Read(p []byte) (int, error) {
	if o.c == nil {
		return 0, os.ErrClosed
	}
	if o.pos >= o.info.Size {
		return 0, io.EOF
	}
	idx := o.pos / ChunkSize
	if idx != o.cur && o.pos == idx*ChunkSize && int64(len(p)) >= ChunkLen(idx, o.info.Size) {
		// A whole chunk wanted: straight into p.
		plain, err := o.src.Chunk(o.c, idx, p[:ChunkLen(idx, o.info.Size)])
		if err != nil {
			return 0, err
		}
		o.pos += int64(len(plain))
		return len(plain), nil
	}
	if idx != o.cur {
		plain, err := o.src.Chunk(o.c, idx, (*o.buf)[:ChunkSize])
		if err != nil {
			o.cur = -1
			return 0, err
		}
		o.plain, o.cur = plain, idx
	}
	n := copy(p, o.plain[o.pos-idx*ChunkSize:])
	o.pos += int64(n)
	return n, nil
}

// ReadAt implements io.ReaderAt, with a stream of its own for the chunks it
// spans: parallel calls are safe, and the Read position is left alone.
func (o *Object) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("resource: ReadAt: negative offset")
	}
	if o.c == nil {
		return 0, os.ErrClosed
	}
	if off >= o.info.Size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	from := off / ChunkSize
	to := min(NumChunks(o.info.Size), (off+int64(len(p))+ChunkSize-1)/ChunkSize)
	_, end := o.src.Span(from, to)
	c := NewCursor(o.ctx, o.b, o.name, o.f, end)
	defer c.Close()
	bp := GetBuf()
	defer PutBuf(bp)
	buf := (*bp)[:ChunkSize]
	total := 0
	for len(p) > 0 {
		if off >= o.info.Size {
			return total, io.EOF
		}
		idx := off / ChunkSize
		plain, err := o.src.Chunk(c, idx, buf)
		if err != nil {
			return total, err
		}
		n := copy(p, plain[off-idx*ChunkSize:])
		p, off, total = p[n:], off+int64(n), total+n
	}
	return total, nil
}

// Seek implements io.Seeker.
func (o *Object) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += o.pos
	case io.SeekEnd:
		offset += o.info.Size
	default:
		return o.pos, errors.New("resource: seek: invalid whence")
	}
	if offset < 0 {
		return o.pos, errors.New("resource: seek: negative position")
	}
	o.pos = offset
	return offset, nil
}

// Close implements io.Closer.
func (o *Object) Close() error {
	if o.c == nil {
		return os.ErrClosed
	}
	o.c.Close()
	PutBuf(o.buf)
	o.c, o.plain, o.buf = nil, nil, nil
	if c, ok := o.src.(io.Closer); ok {
		c.Close()
	}
	if o.f != nil {
		return o.f.Close()
	}
	return nil
}

// Damage counts the resources found damaged, each once until it is stored
// again or removed, and tells the store's owner (the server's
// pullmail_resource_damaged_total).
type Damage struct {
	bad      sync.Map
	n        atomic.Uint64
	onDamage func(resource.ID)
	log      *slog.Logger
	what     string
}

// NewDamage returns a Damage that calls onDamage (when set) and logs to log
// (when set) for each resource found damaged; what names the store in the
// log line.
func NewDamage(what string, onDamage func(resource.ID), log *slog.Logger) *Damage {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Damage{onDamage: onDamage, log: log, what: what}
}

// Found records id as damaged, the first time since it was last stored, and
// returns err, which wraps resource.ErrDamaged.
func (d *Damage) Found(id resource.ID, err error) error {
	if _, seen := d.bad.LoadOrStore(id, true); !seen {
		d.n.Add(1)
		d.log.Error(d.what+": stored resource is damaged; run pullmail fsck --repair", "resource", id, "err", err)
		if d.onDamage != nil {
			d.onDamage(id)
		}
	}
	return err
}

// Log is the logger given to NewDamage.
func (d *Damage) Log() *slog.Logger { return d.log }

// Forget says id was stored again or removed.
func (d *Damage) Forget(id resource.ID) { d.bad.Delete(id) }

// Count is how many resources were found damaged, each counted once.
func (d *Damage) Count() uint64 { return d.n.Load() }

// Lookup finds the object of id in b for an Open: on a bucket.Opener it
// opens it (the caller owns the File), elsewhere it stats it (File nil). A
// missing object is an error wrapping resource.ErrNotFound.
func Lookup(ctx context.Context, b bucket.Bucket, id resource.ID) (bucket.File, bucket.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return nil, bucket.Attrs{}, fmt.Errorf("open %s: %w", id, err)
	}
	var f bucket.File
	var a bucket.Attrs
	var err error
	if op, ok := b.(bucket.Opener); ok {
		if f, err = op.Open(ctx, string(id)); err == nil {
			a = f.Attrs()
		}
	} else {
		a, err = b.Stat(ctx, string(id))
	}
	if errors.Is(err, bucket.ErrNotExist) {
		return nil, a, fmt.Errorf("%s: %w", id, resource.ErrNotFound)
	}
	if err != nil {
		return nil, a, fmt.Errorf("open %s: %w", id, err)
	}
	return f, a, nil
}

// Enumerate calls fn for each object of b named by an ID (others, such as
// sidecars, are skipped), with the plain size that size derives from the
// object's.
func Enumerate(ctx context.Context, b bucket.Bucket, size func(int64) int64, fn func(resource.Info) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.List(ctx, func(name string, a bucket.Attrs) error {
		id, err := resource.ParseID(name)
		if err != nil {
			return nil
		}
		return fn(resource.Info{ID: id, Size: size(a.Size), Created: a.Modified})
	})
}
