package fsstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/pullmail/pullmail/resource"
)

// chunkSource reads the chunks of one open blob, each checked before it is
// returned: authenticated (encrypted) or compared with its sum (plain).
type chunkSource interface {
	// chunk returns chunk idx, read into dst (at least chunkLen bytes
	// long) with the help of b; an error wraps resource.ErrDamaged when
	// the stored chunk is damaged.
	chunk(idx int64, dst []byte, b *chunkBufs) ([]byte, error)
	close() error
}

// chunkSize is the unit a plain blob's sums cover and its objects check.
const chunkSize = 64 << 10

// chunkBufs are the buffers one reader of an object uses.
type chunkBufs struct {
	plain *[]byte
	// A plain blob's sums of chunks [sumsFrom, sumsFrom+sumsN), read from
	// the sidecar a block at a time, as of the source's sumsGen.
	sums            [sumsBlock * sumSize]byte
	sumsFrom, sumsN int64
	sumsGen         int
}

// sumsBlock is how many chunk sums a reader reads from a sidecar at once
// (4 KiB: the sums of 8 MiB of blob).
const sumsBlock = 128

// chunkLen is the length of chunk idx of a blob of size bytes.
func chunkLen(idx, size int64) int64 { return min(chunkSize, size-idx*chunkSize) }

func (s *Store) getBufs() *chunkBufs {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return &chunkBufs{plain: b}
	}
	b := make([]byte, chunkSize)
	return &chunkBufs{plain: &b}
}

func (s *Store) putBufs(b *chunkBufs) { s.bufs.Put(b.plain) }

// object is an open blob: it reads and seeks by chunk, so that a Range read
// checks only the chunks it needs and no byte leaves before its chunk is
// checked (resource.Object).
type object struct {
	s     *Store
	src   chunkSource
	info  resource.Info
	pos   int64
	cur   int64 // the chunk in plain, or -1
	plain []byte
	bufs  *chunkBufs // nil once closed
}

func (s *Store) newObject(src chunkSource, info resource.Info) *object {
	return &object{s: s, src: src, info: info, cur: -1, bufs: s.getBufs()}
}

func (o *object) Info() resource.Info { return o.info }

func (o *object) Read(p []byte) (int, error) {
	if o.bufs == nil {
		return 0, os.ErrClosed
	}
	if o.pos >= o.info.Size {
		return 0, io.EOF
	}
	idx := o.pos / chunkSize
	if idx != o.cur && o.pos == idx*chunkSize && int64(len(p)) >= chunkLen(idx, o.info.Size) {
		// A whole chunk wanted: straight into p, no copy.
		plain, err := o.src.chunk(idx, p, o.bufs)
		if err != nil {
			return 0, err
		}
		o.pos += int64(len(plain))
		return len(plain), nil
	}
	if idx != o.cur {
		plain, err := o.src.chunk(idx, (*o.bufs.plain)[:chunkSize], o.bufs)
		if err != nil {
			o.cur = -1
			return 0, err
		}
		o.plain, o.cur = plain, idx
	}
	n := copy(p, o.plain[o.pos-idx*chunkSize:])
	o.pos += int64(n)
	return n, nil
}

// ReadAt reads by chunk without touching the Read position; parallel calls
// are safe.
func (o *object) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("fsstore: ReadAt: negative offset")
	}
	if o.bufs == nil {
		return 0, os.ErrClosed
	}
	b := o.s.getBufs()
	defer o.s.putBufs(b)
	total := 0
	for len(p) > 0 {
		if off >= o.info.Size {
			return total, io.EOF
		}
		idx := off / chunkSize
		plain, err := o.src.chunk(idx, (*b.plain)[:chunkSize], b)
		if err != nil {
			return total, err
		}
		n := copy(p, plain[off-idx*chunkSize:])
		p, off, total = p[n:], off+int64(n), total+n
	}
	return total, nil
}

func (o *object) Seek(offset int64, whence int) (int64, error) {
	pos, err := seekPos(o.pos, o.info.Size, offset, whence)
	if err != nil {
		return o.pos, err
	}
	o.pos = pos
	return pos, nil
}

func (o *object) Close() error {
	if o.bufs == nil {
		return os.ErrClosed
	}
	o.s.putBufs(o.bufs)
	o.bufs, o.plain = nil, nil
	return o.src.close()
}

// plainSource reads the chunks of a plain blob and compares each with the
// SHA-256 its sidecar records.
type plainSource struct {
	s     *Store
	f     *os.File
	info  resource.Info
	sumsf *os.File // the sidecar file, closed with the source; or nil

	mu      sync.Mutex  // guards sums and sumsGen, which a rebuild replaces
	sums    io.ReaderAt // the sidecar, or its bytes (sumsBytes) when rebuilt
	sumsGen int         // counts the rebuilds, so that readers drop the sums they hold
}

// openPlain opens the sidecar of the plain blob f, building it first when
// it is missing (a blob stored before sidecars) or does not describe the
// blob: that reads and checks the whole blob once.
func (s *Store) openPlain(ctx context.Context, f *os.File, name string, info resource.Info) (*plainSource, error) {
	src := &plainSource{s: s, f: f, info: info}
	if numSums(info.Size) <= 1 {
		// No sidecar: the sum of the one chunk is the ID.
		src.sums = sumsBytes(info.ID.Sum())
		return src, nil
	}
	sf, err := s.openSums(name, info)
	switch {
	case err == nil:
		src.sums, src.sumsf = sf, sf
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, errBadSums):
		if src.sums, err = s.rebuildSums(ctx, f, info); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("fsstore: %s: opening the chunk sums: %w", info.ID, err)
	}
	return src, nil
}

func (o *plainSource) chunk(idx int64, dst []byte, b *chunkBufs) ([]byte, error) {
	for retried := false; ; retried = true {
		n := chunkLen(idx, o.info.Size)
		plain := dst[:n]
		k, err := o.f.ReadAt(plain, idx*chunkSize)
		if int64(k) < n {
			clear(plain)
			if err == nil || err == io.EOF {
				return nil, o.s.damaged(o.info.ID, fmt.Errorf("fsstore: %s: chunk %d is cut short: %w", o.info.ID, idx, resource.ErrDamaged))
			}
			return nil, fmt.Errorf("fsstore: %s: reading chunk %d: %w", o.info.ID, idx, err)
		}
		want, err := o.sum(idx, b)
		if err != nil {
			return nil, err
		}
		if sha256.Sum256(plain) == want {
			return plain, nil
		}
		clear(plain) // not a byte of it leaves
		if retried {
			return nil, o.s.damaged(o.info.ID, fmt.Errorf("fsstore: %s: chunk %d does not match its sum: %w", o.info.ID, idx, resource.ErrDamaged))
		}
		// The chunk or its sum is damaged: the whole blob against its
		// ID tells which. A good blob gets a new sidecar and the chunk
		// is read again.
		rebuilt, err := o.s.rebuildSums(context.Background(), o.f, o.info)
		if err != nil {
			return nil, err
		}
		o.mu.Lock()
		o.sums = rebuilt
		o.sumsGen++
		o.mu.Unlock()
	}
}

// sum returns the recorded SHA-256 of chunk idx, from b's block of sums or,
// when b does not hold it, from a new block read from the sidecar.
func (o *plainSource) sum(idx int64, b *chunkBufs) ([sumSize]byte, error) {
	o.mu.Lock()
	sums, gen := o.sums, o.sumsGen
	o.mu.Unlock()
	if gen != b.sumsGen || idx < b.sumsFrom || idx >= b.sumsFrom+b.sumsN {
		n := min(sumsBlock, numSums(o.info.Size)-idx)
		if _, err := sums.ReadAt(b.sums[:n*sumSize], sumsHeader+idx*sumSize); err != nil {
			b.sumsN = 0
			return [sumSize]byte{}, fmt.Errorf("fsstore: %s: reading the sum of chunk %d: %w", o.info.ID, idx, err)
		}
		b.sumsFrom, b.sumsN, b.sumsGen = idx, n, gen
	}
	i := (idx - b.sumsFrom) * sumSize
	return [sumSize]byte(b.sums[i : i+sumSize]), nil
}

func (o *plainSource) close() error {
	if o.sumsf != nil {
		o.sumsf.Close()
	}
	return o.f.Close()
}
