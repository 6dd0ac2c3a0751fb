package fsstore

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"

	"github.com/pullmail/pullmail/resource"
)

// The chunk-sum sidecar of a plain blob; see the package doc.
const (
	sumsSuffix  = ".sums"
	sumsMagic   = "PMCS"
	sumsVersion = 1
	// sumsHeader is magic[4] version[1] reserved[3] uint32be(chunk size)
	// uint64be(size) ID[43].
	sumsHeader = 4 + 4 + 4 + 8 + 43
	sumSize    = sha256.Size
)

// numSums is how many chunk sums a plain blob of size bytes has: none for
// the empty resource.
func numSums(size int64) int64 { return (size + chunkSize - 1) / chunkSize }

// sumsHeaderFor is the sidecar header of id.
func sumsHeaderFor(id resource.ID, size int64) []byte {
	h := make([]byte, 0, sumsHeader)
	h = append(h, sumsMagic...)
	h = append(h, sumsVersion, 0, 0, 0)
	h = binary.BigEndian.AppendUint32(h, chunkSize)
	h = binary.BigEndian.AppendUint64(h, uint64(size))
	return append(h, id...)
}

// summer hashes each chunkSize bytes written to it and writes the sums to w.
type summer struct {
	w   io.Writer
	h   hash.Hash
	n   int // bytes of the current chunk hashed so far
	sum [sumSize]byte
	err error
}

func newSummer(w io.Writer) *summer { return &summer{w: w, h: sha256.New()} }

func (z *summer) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 && z.err == nil {
		k := min(len(p), chunkSize-z.n)
		z.h.Write(p[:k])
		z.n += k
		p = p[k:]
		if z.n == chunkSize {
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

// close writes the sum of the last, partial chunk.
func (z *summer) close() error {
	if z.n > 0 {
		z.flush()
	}
	return z.err
}

// sumsFile is a sidecar being written in tmp/: the header is written last,
// once the ID is known (the stream is verified only at its end), and the
// file is made only when a second chunk's sum comes (a blob of one chunk at
// most needs no sidecar: its one sum is its ID).
type sumsFile struct {
	s    *Store
	name string   // in tmp/, once made
	f    *os.File // nil until the first sums are written out
	bw   *bufio.Writer
	z    *summer
}

func (s *Store) newSumsFile() *sumsFile {
	sf := &sumsFile{s: s}
	sf.bw = bufio.NewWriterSize(lazyWriter{sf}, 4<<10)
	sf.z = newSummer(sf.bw)
	return sf
}

// lazyWriter makes the sidecar's file on the first write out of the buffer.
type lazyWriter struct{ sf *sumsFile }

func (w lazyWriter) Write(p []byte) (int, error) {
	sf := w.sf
	if sf.f == nil {
		name := path.Join(tmpDir, rand.Text()+sumsSuffix)
		f, err := sf.s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return 0, err
		}
		sf.name, sf.f = name, f
		if _, err := f.Seek(sumsHeader, io.SeekStart); err != nil {
			return 0, err
		}
	}
	return sf.f.Write(p)
}

// finish writes the header and closes the file, which stays in tmp/ for
// the caller to rename; it reports false when the blob needs no sidecar.
// The file is not fsynced: the directory fsync of the commit orders its
// rename, and a sidecar that a crash leaves short, empty or wrong is rebuilt
// from the blob (openPlain, plainSource.chunk), as a damaged one is.
func (sf *sumsFile) finish(id resource.ID, size int64) (bool, error) {
	if numSums(size) <= 1 {
		return false, nil
	}
	if err := sf.z.close(); err != nil {
		return false, err
	}
	if err := sf.bw.Flush(); err != nil {
		return false, err
	}
	if _, err := sf.f.WriteAt(sumsHeaderFor(id, size), 0); err != nil {
		return false, err
	}
	return true, sf.f.Close()
}

// discard removes the file unless it was renamed.
func (sf *sumsFile) discard() {
	if sf.f != nil {
		sf.f.Close()
		sf.s.root.Remove(sf.name)
	}
}

// openSums opens the sidecar of a plain blob of info and checks its header
// and length. It returns fs.ErrNotExist when there is none (a blob stored
// before sidecars) and errBadSums when it is not the sidecar of info.
func (s *Store) openSums(name string, info resource.Info) (*os.File, error) {
	f, err := s.root.Open(name + sumsSuffix)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	var hdr [sumsHeader]byte
	_, err = f.ReadAt(hdr[:], 0)
	if err == nil && fi.Size() == sumsHeader+numSums(info.Size)*sumSize &&
		string(hdr[:]) == string(sumsHeaderFor(info.ID, info.Size)) {
		return f, nil
	}
	f.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return nil, errBadSums
}

var errBadSums = errors.New("the chunk-sum sidecar does not describe the blob")

// rebuildSums reads the whole plain blob f of info, checks it against the
// ID, and writes its sidecar anew: for a blob stored before sidecars, and
// for one whose sidecar is damaged (a chunk that fails its sum is checked
// this way before the blob is called damaged, so that damage to the small
// sidecar never condemns a good blob). It returns the sums, in memory, so
// that the blob stays readable when the sidecar cannot be written (a full
// disk); or an error wrapping resource.ErrDamaged when the blob is damaged.
func (s *Store) rebuildSums(ctx context.Context, f *os.File, info resource.Info) (io.ReaderAt, error) {
	sums := make([]byte, 0, numSums(info.Size)*sumSize)
	z := newSummer(byteWriter{&sums})
	_, _, err := resource.Copy(ctx, z, io.NewSectionReader(f, 0, info.Size+1),
		resource.PutOptions{Want: info.ID, Size: info.Size})
	if errors.Is(err, resource.ErrMismatch) {
		return nil, s.damaged(info.ID, fmt.Errorf("fsstore: %s: the stored bytes do not match the ID (%w): %w", info.ID, err, resource.ErrDamaged))
	}
	if err != nil {
		return nil, fmt.Errorf("fsstore: %s: checking the blob: %w", info.ID, err)
	}
	z.close()
	if err := s.writeSums(info, sums); err != nil {
		s.log.Warn("fsstore: writing a chunk-sum sidecar failed; the blob is checked again at its next open",
			"resource", info.ID, "err", err)
	}
	return sumsBytes(sums), nil
}

// writeSums commits a sidecar for a blob already in place.
func (s *Store) writeSums(info resource.Info, sums []byte) error {
	sf := s.newSumsFile()
	defer sf.discard()
	if _, err := sf.bw.Write(sums); err != nil {
		return err
	}
	if ok, err := sf.finish(info.ID, info.Size); !ok || err != nil {
		return err
	}
	dir, name := s.blobPath(info.ID)
	if err := s.root.Rename(sf.name, name+sumsSuffix); err != nil {
		return err
	}
	return s.syncDir(dir)
}

type byteWriter struct{ b *[]byte }

func (w byteWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

// sumsBytes serves sums from memory as if from a sidecar file.
type sumsBytes []byte

func (b sumsBytes) ReadAt(p []byte, off int64) (int, error) {
	off -= sumsHeader
	if off < 0 || off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// removeSums removes a blob's sidecar; a missing one is no error.
func (s *Store) removeSums(name string) error {
	if err := s.root.Remove(name + sumsSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
