package fsstore

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/pullmail/pullmail/resource"
)

// The encrypted file format; see the package doc.
const (
	chunkSize   = 64 << 10
	tagSize     = 16
	sealedChunk = chunkSize + tagSize
	headerSize  = 64
	headerIndex = 1<<32 - 1 // the nonce counter of the header tag; chunks stay below
	hkdfInfo    = "pullmail-fsstore aes-256-gcm v1"
	headerAD    = "pullmail-fsstore header"
)

var magic = [8]byte{'P', 'M', 'R', 'E', 1, 0, 0, 0}

var errBadLength = fmt.Errorf("encrypted file has an impossible length: %w", resource.ErrDamaged)

// plainSize derives the plain size from an encrypted file's size.
func plainSize(fileSize int64) (int64, error) {
	c := fileSize - headerSize
	if c < tagSize {
		return 0, errBadLength
	}
	n := (c + sealedChunk - 1) / sealedChunk
	last := c - (n-1)*sealedChunk
	if last < tagSize || n > 1 && last == tagSize || n >= headerIndex {
		return 0, errBadLength
	}
	return c - n*tagSize, nil
}

// numChunks is how many chunks hold size plain bytes.
func numChunks(size int64) int64 {
	if size == 0 {
		return 1
	}
	return (size + chunkSize - 1) / chunkSize
}

// fileAEAD returns the AEAD of one file, keyed by its salt.
func (s *Store) fileAEAD(salt []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, s.key, salt, hkdfInfo, KeySize)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func nonce(dst *[12]byte, prefix []byte, idx uint32) []byte {
	copy(dst[:8], prefix)
	binary.BigEndian.PutUint32(dst[8:], idx)
	return dst[:]
}

func headerData(id resource.ID, size int64) []byte {
	ad := make([]byte, 0, len(headerAD)+len(id)+8)
	ad = append(ad, headerAD...)
	ad = append(ad, id...)
	return binary.BigEndian.AppendUint64(ad, uint64(size))
}

// getBuf and putBuf recycle chunk-sized buffers.
func (s *Store) getBuf() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, sealedChunk)
	return &b
}

func (s *Store) putBuf(b *[]byte) { s.bufs.Put(b) }

// putEncrypted writes r to f encrypted and returns its verified ID.
func (s *Store) putEncrypted(ctx context.Context, f *os.File, r io.Reader, opt resource.PutOptions) (resource.ID, error) {
	var hdr [headerSize]byte
	copy(hdr[:], magic[:])
	rand.Read(hdr[8:48]) // salt and nonce prefix; crypto/rand.Read never fails
	aead, err := s.fileAEAD(hdr[8:40])
	if err != nil {
		return "", err
	}
	if _, err := f.Write(hdr[:]); err != nil {
		return "", err
	}
	plain, sealed := s.getBuf(), s.getBuf()
	defer s.putBuf(plain)
	defer s.putBuf(sealed)
	z := &sealer{w: newWriteback(f, int64(len(hdr))), aead: aead, prefix: hdr[40:48], buf: (*plain)[:0:chunkSize], out: *sealed}
	id, size, err := resource.Copy(ctx, z, r, opt)
	if err != nil {
		return "", err
	}
	if err := z.seal(true); err != nil {
		return "", err
	}
	var n [12]byte
	tag := aead.Seal(nil, nonce(&n, hdr[40:48], headerIndex), nil, headerData(id, size))
	if _, err := f.WriteAt(tag, 48); err != nil {
		return "", err
	}
	return id, nil
}

// sealer encrypts what is written to it chunk by chunk. It holds back a full
// chunk until more bytes come, so that the last chunk is always sealed as last.
type sealer struct {
	w      io.Writer
	aead   cipher.AEAD
	prefix []byte
	buf    []byte // plain bytes waiting; cap chunkSize
	out    []byte // cap sealedChunk
	idx    int64
	nonce  [12]byte
	ad     [1]byte
}

func (z *sealer) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if len(z.buf) == chunkSize {
			if err := z.seal(false); err != nil {
				return total - len(p), err
			}
		}
		k := copy(z.buf[len(z.buf):chunkSize], p)
		z.buf = z.buf[:len(z.buf)+k]
		p = p[k:]
	}
	return total, nil
}

func (z *sealer) seal(last bool) error {
	if z.idx >= headerIndex {
		return errors.New("too large to encrypt")
	}
	z.ad[0] = 0
	if last {
		z.ad[0] = 1
	}
	out := z.aead.Seal(z.out[:0], nonce(&z.nonce, z.prefix, uint32(z.idx)), z.buf, z.ad[:])
	z.buf = z.buf[:0]
	z.idx++
	_, err := z.w.Write(out)
	return err
}

// encSource reads the chunks of an open encrypted blob.
type encSource struct {
	s       *Store
	f       *os.File
	info    resource.Info
	aead    cipher.AEAD
	prefix  [8]byte
	nchunks int64
}

// scratch holds a chunk's nonce and additional data (kept off the heap per
// chunk).
type scratch struct {
	nonce [12]byte
	ad    [1]byte
}

func (s *Store) openEncrypted(f *os.File, info resource.Info) (*encSource, error) {
	var hdr [headerSize]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("reading the header: %w", err)
	}
	if [8]byte(hdr[:8]) != magic {
		return nil, s.damaged(info.ID, fmt.Errorf("not an encrypted resource file (magic %q): %w", hdr[:8], resource.ErrDamaged))
	}
	aead, err := s.fileAEAD(hdr[8:40])
	if err != nil {
		return nil, err
	}
	var n [12]byte
	if _, err := aead.Open(nil, nonce(&n, hdr[40:48], headerIndex), hdr[48:64], headerData(info.ID, info.Size)); err != nil {
		return nil, s.damaged(info.ID, fmt.Errorf("header authentication failed (the file was damaged, cut or moved, or written with another key): %w", resource.ErrDamaged))
	}
	return &encSource{s: s, f: f, info: info, aead: aead, prefix: [8]byte(hdr[40:48]), nchunks: numChunks(info.Size)}, nil
}

// chunk reads chunk idx through b.sealed, authenticates it and decrypts it
// into dst, and returns the plain bytes.
func (o *encSource) chunk(idx int64, dst []byte, b *chunkBufs) ([]byte, error) {
	n := int64(sealedChunk)
	last := idx == o.nchunks-1
	if last {
		n = o.info.Size - idx*chunkSize + tagSize
	}
	sealed := (*b.sealed)[:n]
	off := headerSize + idx*sealedChunk
	k, err := o.f.ReadAt(sealed, off)
	if int64(k) < n {
		if err == nil || err == io.EOF {
			return nil, o.s.damaged(o.info.ID, fmt.Errorf("fsstore: %s: chunk %d is cut short: %w", o.info.ID, idx, resource.ErrDamaged))
		}
		return nil, fmt.Errorf("fsstore: %s: reading chunk %d: %w", o.info.ID, idx, err)
	}
	b.scr.ad[0] = 0
	if last {
		b.scr.ad[0] = 1
	}
	p, err := o.aead.Open(dst[:0], nonce(&b.scr.nonce, o.prefix[:], uint32(idx)), sealed, b.scr.ad[:])
	if err != nil {
		return nil, o.s.damaged(o.info.ID, fmt.Errorf("fsstore: %s: chunk %d failed authentication: %w", o.info.ID, idx, resource.ErrDamaged))
	}
	return p, nil
}

func (o *encSource) close() error { return o.f.Close() }
