// Package blobstore is a resource.Store over any bucket.Bucket, keeping the
// plain bytes of each resource with the SHA-256 of each of its 64 KiB chunks,
// so that every read is checked by chunk (resource.Object). resource/s3store
// and resource/memstore are this store over an S3 bucket and over memory;
// resource/sealed is its encrypted counterpart.
//
// # Objects
//
//	<ID>        the resource's bytes
//	<ID>.sums   its chunk sums, for a resource of more than one chunk: the
//	            sidecar format of resource/fsstore (magic "PMCS", version 1,
//	            chunk size, size, ID, then one SHA-256 per chunk)
//
// A resource of one chunk at most has no sidecar: its one sum is its ID.
//
// # Put
//
// Put streams the bytes into a new object of the bucket while
// resource.Copy hashes them, and the sums into a second one; only once the
// stream has been verified does it commit the sidecar under <ID>.sums and
// then the bytes under <ID> (bucket.Writer.Commit, atomic per object). A
// failed Put commits nothing. The sidecar goes first, since it depends on the
// ID alone: a crash between the two commits leaves the sums of the ID's bytes
// beside the old copy (or none), which they describe as well.
//
// # Damage
//
// An Object compares each chunk it reads with its sum before returning any
// byte of it. A sidecar that is missing or does not describe its blob, or a
// chunk that fails its sum, makes the store read the whole blob against its
// ID: a good blob gets a new sidecar (damage to the sidecar never condemns a
// good blob), a bad one is damaged (resource.ErrDamaged), counted once in
// DamageCount and Options.OnDamage.
package blobstore

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/bucket"
	"github.com/pullmail/pullmail/resource/internal/chunkio"
)

// Options configure a Store.
type Options struct {
	// OnDamage, when set, is called once for each resource found damaged
	// until it is stored again or removed. It must not block.
	OnDamage func(resource.ID)
	// Log receives a line for each damaged resource found (default: none).
	Log *slog.Logger
}

// Store is a resource.Store over a bucket. It is safe for concurrent use.
type Store struct {
	b      bucket.Bucket
	damage *chunkio.Damage
}

var _ resource.Store = (*Store)(nil)

// New returns the store over b.
func New(b bucket.Bucket, opt Options) *Store {
	return &Store{b: b, damage: chunkio.NewDamage("blobstore", opt.OnDamage, opt.Log)}
}

// DamageCount is how many resources were found damaged, each counted once
// until it is stored again or removed.
func (s *Store) DamageCount() uint64 { return s.damage.Count() }

const (
	sumsSuffix  = ".sums"
	sumsMagic   = "PMCS"
	sumsVersion = 1
	// sumsHeader is magic[4] version[1] reserved[3] uint32be(chunk size)
	// uint64be(size) ID[43].
	sumsHeader = 4 + 4 + 4 + 8 + 43
	sumSize    = sha256.Size
	// sumsBlock is how many sums a reader fetches at once (the sums of
	// 8 MiB of blob).
	sumsBlock = 128
)

func sumsHeaderFor(id resource.ID, size int64) []byte {
	h := make([]byte, 0, sumsHeader)
	h = append(h, sumsMagic...)
	h = append(h, sumsVersion, 0, 0, 0)
	h = binary.BigEndian.AppendUint32(h, chunkio.ChunkSize)
	h = binary.BigEndian.AppendUint64(h, uint64(size))
	return append(h, id...)
}

func parse(s resource.ID) (resource.ID, error) {
	id, err := resource.ParseID(string(s))
	if err != nil {
		return "", fmt.Errorf("blobstore: %q: %w", s, err)
	}
	return id, nil
}

// summer hashes each chunk written to it and writes the sums to w.
type summer struct {
	w   io.Writer
	h   hash.Hash
	n   int
	sum [sumSize]byte
	err error
}

func newSummer(w io.Writer) *summer { return &summer{w: w, h: sha256.New()} }

func (z *summer) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 && z.err == nil {
		k := min(len(p), chunkio.ChunkSize-z.n)
		z.h.Write(p[:k])
		z.n += k
		p = p[k:]
		if z.n == chunkio.ChunkSize {
			z.flush()
		}
	}
	return total, z.err
}

func (z *summer) flush() {
	if z.err == nil {
		_, z.err = z.w.Write(z.h.Sum(z.sum[:0]))
	}
	z.h.Reset()
	z.n = 0
}

func (z *summer) close() error {
	if z.n > 0 {
		z.flush()
	}
	return z.err
}

// sidecar is a sums object being written: made at the first write out of
// its buffer (a resource of one chunk makes none), header patched in last.
type sidecar struct {
	ctx  context.Context
	b    bucket.Bucket
	want resource.ID
	w    bucket.Writer
	bw   *bufio.Writer
	z    *summer
}

func newSidecar(ctx context.Context, b bucket.Bucket, want resource.ID) *sidecar {
	sc := &sidecar{ctx: ctx, b: b, want: want}
	sc.bw = bufio.NewWriterSize(lazy{sc}, 4<<10)
	sc.z = newSummer(sc.bw)
	return sc
}

type lazy struct{ sc *sidecar }

func (l lazy) Write(p []byte) (int, error) {
	sc := l.sc
	if sc.w == nil {
		opt := bucket.CreateOptions{Patch: sumsHeader, Volatile: true}
		if sc.want != "" {
			opt.Name = string(sc.want) + sumsSuffix
		}
		w, err := sc.b.Create(sc.ctx, opt)
		if err != nil {
			return 0, err
		}
		sc.w = w
		if _, err := w.Write(make([]byte, sumsHeader)); err != nil {
			return 0, err
		}
	}
	return sc.w.Write(p)
}

// commit writes the header and commits the sidecar of id, when it needs
// one.
func (sc *sidecar) commit(ctx context.Context, id resource.ID, size int64) error {
	if chunkio.NumChunks(size) <= 1 {
		return nil
	}
	if err := sc.z.close(); err != nil {
		return err
	}
	if err := sc.bw.Flush(); err != nil {
		return err
	}
	if err := sc.w.Patch(sumsHeaderFor(id, size), 0); err != nil {
		return err
	}
	return sc.w.Commit(ctx, string(id)+sumsSuffix)
}

func (sc *sidecar) abort() {
	if sc.w != nil {
		sc.w.Abort()
	}
}

// Put implements resource.Putter. A resource already stored is replaced by
// the new, verified copy, so that a Put of the right bytes repairs a damaged
// one.
func (s *Store) Put(ctx context.Context, r io.Reader, opt resource.PutOptions) (resource.Info, error) {
	if err := ctx.Err(); err != nil {
		return resource.Info{}, fmt.Errorf("blobstore: put: %w", err)
	}
	if opt.Want != "" {
		if _, err := parse(opt.Want); err != nil {
			return resource.Info{}, err
		}
	}
	w, err := s.b.Create(ctx, bucket.CreateOptions{Name: string(opt.Want)})
	if err != nil {
		return resource.Info{}, fmt.Errorf("blobstore: put: %w", err)
	}
	defer w.Abort()
	sc := newSidecar(ctx, s.b, opt.Want)
	defer sc.abort()
	id, size, err := resource.Copy(ctx, io.MultiWriter(w, sc.z), r, opt)
	if err != nil {
		return resource.Info{}, fmt.Errorf("blobstore: put: %w", err)
	}
	if err := sc.commit(ctx, id, size); err != nil {
		return resource.Info{}, fmt.Errorf("blobstore: put %s: sums: %w", id, err)
	}
	// The last chance to give up: after this the resource is stored.
	if err := ctx.Err(); err != nil {
		return resource.Info{}, fmt.Errorf("blobstore: put %s: %w", id, err)
	}
	if err := w.Commit(ctx, string(id)); err != nil {
		return resource.Info{}, fmt.Errorf("blobstore: put %s: %w", id, err)
	}
	s.damage.Forget(id)
	info, err := s.Stat(context.WithoutCancel(ctx), id)
	if errors.Is(err, resource.ErrNotFound) {
		// Removed the moment it was stored: a garbage collection of the
		// same bytes, unreferenced until then. That is no failure of the
		// Put: the writer finds the collection in its transaction and
		// stores the bytes again (package meta, gc.go).
		return resource.Info{ID: id, Size: size, Created: time.Now()}, nil
	}
	return info, err
}

// Stat implements resource.Statter.
func (s *Store) Stat(ctx context.Context, id resource.ID) (resource.Info, error) {
	id, err := parse(id)
	if err != nil {
		return resource.Info{}, err
	}
	a, err := s.b.Stat(ctx, string(id))
	if errors.Is(err, bucket.ErrNotExist) {
		return resource.Info{}, fmt.Errorf("blobstore: %s: %w", id, resource.ErrNotFound)
	}
	if err != nil {
		return resource.Info{}, fmt.Errorf("blobstore: %w", err)
	}
	return resource.Info{ID: id, Size: a.Size, Created: a.Modified}, nil
}

// Open implements resource.Fetcher. The Object also implements io.ReaderAt;
// its reads run under ctx. A blob without a valid sidecar is read and
// checked whole here, once, and gets one.
//
// On a bucket.Opener (a directory) the blob and its sidecar are opened once
// and read in place.
func (s *Store) Open(ctx context.Context, id resource.ID) (resource.Object, error) {
	id, err := parse(id)
	if err != nil {
		return nil, err
	}
	f, a, err := chunkio.Lookup(ctx, s.b, id)
	if err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	op, _ := s.b.(bucket.Opener)
	info := resource.Info{ID: id, Size: a.Size, Created: a.Modified}
	src := &plainSource{s: s, ctx: ctx, info: info, op: op, f: f}
	if chunkio.NumChunks(info.Size) <= 1 {
		src.sums = info.ID.Sum()
	} else if err := src.loadSums(); err != nil {
		src.Close()
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("blobstore: open %s: %w", info.ID, err)
	}
	return chunkio.NewObject(ctx, s.b, string(info.ID), f, src, info), nil
}

// plainSource checks each chunk against its sum.
type plainSource struct {
	s    *Store
	ctx  context.Context
	info resource.Info
	op   bucket.Opener // or nil
	f    bucket.File   // the blob, opened through op; or nil
	// sumsF is the sidecar, opened through op, closed with the source.
	sumsF bucket.File

	mu   sync.Mutex
	sums []byte // all the sums, when held in memory (small or rebuilt); else nil
	// block holds the sums of chunks from blockFrom on, as last read from
	// the sidecar.
	block     []byte
	blockFrom int64
}

// loadSums checks the sidecar's header and length; a missing or wrong one
// is rebuilt from the blob.
func (p *plainSource) loadSums() error {
	name := string(p.info.ID) + sumsSuffix
	want := int64(sumsHeader) + chunkio.NumChunks(p.info.Size)*sumSize
	var a bucket.Attrs
	var err error
	if p.op != nil {
		if p.sumsF, err = p.op.Open(p.ctx, name); err == nil {
			a = p.sumsF.Attrs()
		}
	} else {
		a, err = p.s.b.Stat(p.ctx, name)
	}
	if err == nil && a.Size == want {
		var hdr [sumsHeader]byte
		err = p.readSums(hdr[:], 0)
		if err == nil && string(hdr[:]) == string(sumsHeaderFor(p.info.ID, p.info.Size)) {
			return nil
		}
	}
	if p.sumsF != nil {
		p.sumsF.Close()
		p.sumsF = nil
	}
	if err != nil && !errors.Is(err, bucket.ErrNotExist) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("reading the chunk sums: %w", err)
	}
	return p.rebuild()
}

// Close implements io.Closer: the Object closes its source.
func (p *plainSource) Close() error {
	if p.sumsF != nil {
		return p.sumsF.Close()
	}
	return nil
}

// readSums reads bytes of the sidecar at off.
func (p *plainSource) readSums(b []byte, off int64) error {
	if p.sumsF != nil {
		n, err := p.sumsF.ReadAt(b, off)
		if n == len(b) {
			return nil
		}
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return readFull(p.ctx, p.s.b, string(p.info.ID)+sumsSuffix, b, off)
}

func readFull(ctx context.Context, b bucket.Bucket, name string, p []byte, off int64) error {
	r, err := b.Read(ctx, name, off, int64(len(p)))
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// rebuild reads the whole blob, checks it against the ID, keeps its sums in
// memory and writes its sidecar anew; a blob that fails is damaged.
func (p *plainSource) rebuild() error {
	var r io.Reader
	if p.f != nil {
		// One byte more than the size: a file grown since it was opened
		// is a mismatch.
		r = io.NewSectionReader(p.f, 0, p.info.Size+1)
	} else {
		rc, err := p.s.b.Read(p.ctx, string(p.info.ID), 0, p.info.Size)
		if err != nil {
			return err
		}
		defer rc.Close()
		r = rc
	}
	sums := make([]byte, 0, chunkio.NumChunks(p.info.Size)*sumSize)
	z := newSummer(byteWriter{&sums})
	_, _, err := resource.Copy(p.ctx, z, r, resource.PutOptions{Want: p.info.ID, Size: p.info.Size})
	if errors.Is(err, resource.ErrMismatch) || errors.Is(err, io.ErrUnexpectedEOF) {
		return p.s.damage.Found(p.info.ID, fmt.Errorf("blobstore: %s: the stored bytes do not match the ID (%w): %w", p.info.ID, err, resource.ErrDamaged))
	}
	if err != nil {
		return fmt.Errorf("checking the blob: %w", err)
	}
	z.close()
	p.mu.Lock()
	p.sums = sums
	p.mu.Unlock()
	sc := newSidecar(p.ctx, p.s.b, p.info.ID)
	defer sc.abort()
	_, err = sc.bw.Write(sums)
	if err == nil {
		err = sc.commit(p.ctx, p.info.ID, p.info.Size)
	}
	if err != nil {
		p.s.damage.Log().Warn("blobstore: writing a chunk-sum sidecar failed; the blob is checked again at its next open",
			"resource", p.info.ID, "err", err)
	}
	return nil
}

type byteWriter struct{ b *[]byte }

func (w byteWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

// sum returns the recorded sum of chunk idx, from memory or from the
// source's last block of the sidecar, read anew when it does not hold idx.
func (p *plainSource) sum(idx int64) ([sumSize]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sums != nil {
		return [sumSize]byte(p.sums[idx*sumSize:]), nil
	}
	if idx < p.blockFrom || idx >= p.blockFrom+int64(len(p.block)/sumSize) {
		n := min(sumsBlock, chunkio.NumChunks(p.info.Size)-idx)
		block := p.block[:0]
		if int64(cap(block)) < n*sumSize {
			block = make([]byte, 0, sumsBlock*sumSize)
		}
		block = block[:n*sumSize] // the sums are copied out under mu: reuse is safe
		if err := p.readSums(block, sumsHeader+idx*sumSize); err != nil {
			return [sumSize]byte{}, fmt.Errorf("blobstore: %s: reading the sum of chunk %d: %w", p.info.ID, idx, err)
		}
		p.block, p.blockFrom = block, idx
	}
	return [sumSize]byte(p.block[(idx-p.blockFrom)*sumSize:]), nil
}

// Span implements chunkio.Source: chunks lie at their plain offsets.
func (p *plainSource) Span(from, to int64) (int64, int64) {
	return from * chunkio.ChunkSize, min(to*chunkio.ChunkSize, p.info.Size)
}

// Chunk implements chunkio.Source.
func (p *plainSource) Chunk(c *chunkio.Cursor, idx int64, dst []byte) ([]byte, error) {
	for retried := false; ; retried = true {
		plain := dst[:chunkio.ChunkLen(idx, p.info.Size)]
		if err := c.ReadFull(plain, idx*chunkio.ChunkSize); err != nil {
			clear(plain)
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, p.s.damage.Found(p.info.ID, fmt.Errorf("blobstore: %s: chunk %d is cut short: %w", p.info.ID, idx, resource.ErrDamaged))
			}
			return nil, fmt.Errorf("blobstore: %s: reading chunk %d: %w", p.info.ID, idx, err)
		}
		want, err := p.sum(idx)
		if err != nil {
			return nil, err
		}
		if sha256.Sum256(plain) == want {
			return plain, nil
		}
		clear(plain) // not a byte of it leaves
		if retried {
			return nil, p.s.damage.Found(p.info.ID, fmt.Errorf("blobstore: %s: chunk %d does not match its sum: %w", p.info.ID, idx, resource.ErrDamaged))
		}
		// The chunk or its sum is damaged: the whole blob against its ID
		// tells which.
		if err := p.rebuild(); err != nil {
			return nil, err
		}
	}
}

// Remove implements resource.Remover: the blob, then its sidecar (a sidecar
// left alone by a crash describes nothing and costs nothing).
func (s *Store) Remove(ctx context.Context, id resource.ID) error {
	id, err := parse(id)
	if err != nil {
		return err
	}
	if err := s.b.Delete(ctx, string(id)); err != nil {
		return fmt.Errorf("blobstore: remove: %w", err)
	}
	if err := s.b.Delete(ctx, string(id)+sumsSuffix); err != nil {
		return fmt.Errorf("blobstore: remove: %w", err)
	}
	s.damage.Forget(id)
	return nil
}

// Enumerate implements resource.Enumerator; objects that are not a
// resource (sidecars, anything else) are skipped.
func (s *Store) Enumerate(ctx context.Context, fn func(resource.Info) error) error {
	if err := chunkio.Enumerate(ctx, s.b, func(n int64) int64 { return n }, fn); err != nil {
		return fmt.Errorf("blobstore: enumerate: %w", err)
	}
	return nil
}
