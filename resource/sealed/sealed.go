// Package sealed encrypts resources at rest, over any bucket.Bucket: a
// directory (resource/fsstore's), S3 (resource/s3store) or memory. It is a
// resource.Store whose objects are AES-256-GCM ciphertext in chunks of
// 64 KiB of plain bytes, each authenticated before any byte of it is
// returned, so it needs no chunk sums: a flipped bit, a cut or grown object,
// an object moved under another ID's name or read with another key fails
// with resource.ErrDamaged where it is read.
//
// # Format
//
// The format is resource/fsstore's encrypted file format, byte for byte, so
// that the directories it wrote stay readable (its testdata holds one):
//
//	header (64 bytes):
//	  0  "PMRE"              magic
//	  4  0x01 0 0 0          version 1, reserved
//	  8  salt[32]            random per object
//	  40 prefix[8]           random per object: the nonce prefix
//	  48 tag[16]             the header tag, below
//	chunks: AES-GCM(plain chunk) || its 16-byte GCM tag, one after the other
//
// The object's AES key is HKDF-SHA256(Key, salt, "pullmail-fsstore
// aes-256-gcm v1"), so no two objects share a key and nonces cannot repeat
// across objects. Chunk i (i < 2^32-1) is sealed with the nonce prefix ||
// uint32be(i) and the additional data {1} for the last chunk or {0} for the
// others, so an object cut at a chunk boundary or grown by chunks fails.
// Every chunk holds 64 KiB except the last, which holds 1 to 64 Ki bytes; the
// empty resource is one empty last chunk. The plain size is derived from the
// object's size (PlainSize).
//
// The header tag is the GCM tag of an empty plaintext sealed with the nonce
// prefix || 0xffffffff and the additional data "pullmail-fsstore header" ||
// ID || uint64be(plain size). It is computed once the upload is verified (the
// ID is known only at the end of the stream) and written in place with
// bucket.Writer.Patch before the object is committed; every Open checks it.
package sealed

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/bucket"
	"github.com/pullmail/pullmail/resource/internal/chunkio"
)

// The format's sizes; see the package doc.
const (
	KeySize     = 32
	ChunkSize   = chunkio.ChunkSize
	TagSize     = 16
	SealedChunk = ChunkSize + TagSize
	HeaderSize  = 64
	headerIndex = 1<<32 - 1 // the nonce counter of the header tag; chunks stay below
	hkdfInfo    = "pullmail-fsstore aes-256-gcm v1"
	headerAD    = "pullmail-fsstore header"
)

var magic = [8]byte{'P', 'M', 'R', 'E', 1, 0, 0, 0}

var errBadLength = fmt.Errorf("encrypted object has an impossible length: %w", resource.ErrDamaged)

// PlainSize derives the plain size from a stored object's size; a size no
// writer produces is an error wrapping resource.ErrDamaged.
func PlainSize(stored int64) (int64, error) {
	c := stored - HeaderSize
	if c < TagSize {
		return 0, errBadLength
	}
	n := (c + SealedChunk - 1) / SealedChunk
	last := c - (n-1)*SealedChunk
	if last < TagSize || n > 1 && last == TagSize || n >= headerIndex {
		return 0, errBadLength
	}
	return c - n*TagSize, nil
}

// NumChunks is how many chunks hold size plain bytes: one at least.
func NumChunks(size int64) int64 { return max(1, chunkio.NumChunks(size)) }

// StoredSize is the size of the object holding size plain bytes.
func StoredSize(size int64) int64 { return HeaderSize + size + NumChunks(size)*TagSize }

// StoredOffset is where the ciphertext of plain byte off lies in its
// object: for tools and tests that look at objects.
func StoredOffset(off int64) int64 {
	return HeaderSize + off/ChunkSize*SealedChunk + off%ChunkSize
}

// KeyCheck is a value that tells keys apart without revealing them: the
// first 16 bytes of HMAC-SHA256(key, "pullmail-fsstore key check"), in
// base64url, as fsstore's format file records it.
func KeyCheck(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("pullmail-fsstore key check"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// Options configure a Store.
type Options struct {
	// OnDamage, when set, is called once for each resource found damaged
	// until it is stored again or removed. It must not block.
	OnDamage func(resource.ID)
	// Log receives a line for each damaged resource found (default: none).
	Log *slog.Logger
}

// Store is an encrypted resource.Store over a bucket. It is safe for
// concurrent use.
type Store struct {
	b      bucket.Bucket
	key    []byte
	damage *chunkio.Damage
}

var _ resource.Store = (*Store)(nil)

// New returns the store over b, encrypting with key (KeySize bytes, kept
// apart from the bucket). It does not check that b's objects were sealed
// with key: a store's owner records KeyCheck beside them (fsstore's format
// file) and compares it first.
func New(b bucket.Bucket, key []byte, opt Options) (*Store, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("sealed: key is %d bytes, want %d", len(key), KeySize)
	}
	return &Store{b: b, key: append([]byte(nil), key...), damage: chunkio.NewDamage("sealed", opt.OnDamage, opt.Log)}, nil
}

// DamageCount is how many resources were found damaged, each counted once
// until it is stored again or removed.
func (s *Store) DamageCount() uint64 { return s.damage.Count() }

func parse(s resource.ID) (resource.ID, error) {
	id, err := resource.ParseID(string(s))
	if err != nil {
		return "", fmt.Errorf("sealed: %q: %w", s, err)
	}
	return id, nil
}

// objectAEAD returns the AEAD of one object, keyed by its salt.
func (s *Store) objectAEAD(salt []byte) (cipher.AEAD, error) {
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

// Put implements resource.Putter: it streams r encrypted into a new object,
// and once resource.Copy has verified the bytes patches in the header tag
// and commits the object under the ID. A resource already stored is
// replaced, so that a Put of the right bytes repairs a damaged copy.
func (s *Store) Put(ctx context.Context, r io.Reader, opt resource.PutOptions) (resource.Info, error) {
	if err := ctx.Err(); err != nil {
		return resource.Info{}, fmt.Errorf("sealed: put: %w", err)
	}
	if opt.Want != "" {
		if _, err := parse(opt.Want); err != nil {
			return resource.Info{}, err
		}
	}
	w, err := s.b.Create(ctx, bucket.CreateOptions{Name: string(opt.Want), Patch: HeaderSize})
	if err != nil {
		return resource.Info{}, fmt.Errorf("sealed: put: %w", err)
	}
	defer w.Abort()
	cr := &countingReader{r: r}
	id, err := s.seal(ctx, w, cr, opt)
	if err != nil {
		return resource.Info{}, fmt.Errorf("sealed: put: %w", err)
	}
	// The last chance to give up: after this the resource is stored.
	if err := ctx.Err(); err != nil {
		return resource.Info{}, fmt.Errorf("sealed: put %s: %w", id, err)
	}
	if err := w.Commit(ctx, string(id)); err != nil {
		return resource.Info{}, fmt.Errorf("sealed: put %s: %w", id, err)
	}
	s.damage.Forget(id)
	info, err := s.Stat(context.WithoutCancel(ctx), id)
	if errors.Is(err, resource.ErrNotFound) {
		// Removed the moment it was stored: a garbage collection of the
		// same bytes (see blobstore.Store.Put).
		return resource.Info{ID: id, Size: cr.n, Created: time.Now()}, nil
	}
	return info, err
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// seal writes r to w encrypted, header tag included, and returns its
// verified ID.
func (s *Store) seal(ctx context.Context, w bucket.Writer, r io.Reader, opt resource.PutOptions) (resource.ID, error) {
	var hdr [HeaderSize]byte
	copy(hdr[:], magic[:])
	rand.Read(hdr[8:48]) // salt and nonce prefix; crypto/rand.Read never fails
	aead, err := s.objectAEAD(hdr[8:40])
	if err != nil {
		return "", err
	}
	if _, err := w.Write(hdr[:]); err != nil {
		return "", err
	}
	plain, out := chunkio.GetBuf(), chunkio.GetBuf()
	defer chunkio.PutBuf(plain)
	defer chunkio.PutBuf(out)
	z := &sealer{w: w, aead: aead, prefix: hdr[40:48], buf: (*plain)[:0:ChunkSize], out: (*out)[:0]}
	id, size, err := resource.Copy(ctx, z, r, opt)
	if err != nil {
		return "", err
	}
	if err := z.seal(true); err != nil {
		return "", err
	}
	var n [12]byte
	tag := aead.Seal(nil, nonce(&n, hdr[40:48], headerIndex), nil, headerData(id, size))
	if err := w.Patch(tag, 48); err != nil {
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
	buf    []byte // plain bytes waiting; cap ChunkSize
	out    []byte // cap SealedChunk
	idx    int64
	nonce  [12]byte
	ad     [1]byte
}

func (z *sealer) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if len(z.buf) == ChunkSize {
			if err := z.seal(false); err != nil {
				return total - len(p), err
			}
		}
		k := copy(z.buf[len(z.buf):ChunkSize], p)
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

// Stat implements resource.Statter. An object whose size no writer
// produces is damaged.
func (s *Store) Stat(ctx context.Context, id resource.ID) (resource.Info, error) {
	id, err := parse(id)
	if err != nil {
		return resource.Info{}, err
	}
	a, err := s.b.Stat(ctx, string(id))
	if errors.Is(err, bucket.ErrNotExist) {
		return resource.Info{}, fmt.Errorf("sealed: %s: %w", id, resource.ErrNotFound)
	}
	if err != nil {
		return resource.Info{}, fmt.Errorf("sealed: %w", err)
	}
	size, err := PlainSize(a.Size)
	if err != nil {
		return resource.Info{}, fmt.Errorf("sealed: %s: %w", id, err)
	}
	return resource.Info{ID: id, Size: size, Created: a.Modified}, nil
}

// Open implements resource.Fetcher: it authenticates the header (ID, size,
// key) before it returns. The Object also implements io.ReaderAt; its reads
// run under ctx and decrypt only the chunks they need. On a bucket.Opener
// (a directory) the object is opened once and read in place.
func (s *Store) Open(ctx context.Context, id resource.ID) (resource.Object, error) {
	id, err := parse(id)
	if err != nil {
		return nil, err
	}
	f, a, err := chunkio.Lookup(ctx, s.b, id)
	if err != nil {
		return nil, fmt.Errorf("sealed: %w", err)
	}
	o, err := s.open(ctx, id, f, a)
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, err
	}
	return o, nil
}

func (s *Store) open(ctx context.Context, id resource.ID, f bucket.File, a bucket.Attrs) (resource.Object, error) {
	size, err := PlainSize(a.Size)
	if err != nil {
		return nil, s.damage.Found(id, fmt.Errorf("sealed: %s: %w", id, err))
	}
	info := resource.Info{ID: id, Size: size, Created: a.Modified}
	var hdr [HeaderSize]byte
	c := chunkio.NewCursor(ctx, s.b, string(id), f, HeaderSize)
	err = c.ReadFull(hdr[:], 0)
	c.Close()
	if err != nil {
		if errors.Is(err, bucket.ErrNotExist) {
			return nil, fmt.Errorf("sealed: %s: %w", id, resource.ErrNotFound)
		}
		return nil, fmt.Errorf("sealed: open %s: reading the header: %w", id, err)
	}
	if [8]byte(hdr[:8]) != magic {
		return nil, s.damage.Found(id, fmt.Errorf("sealed: %s: not an encrypted resource (magic %q): %w", id, hdr[:8], resource.ErrDamaged))
	}
	aead, err := s.objectAEAD(hdr[8:40])
	if err != nil {
		return nil, err
	}
	var n [12]byte
	if _, err := aead.Open(nil, nonce(&n, hdr[40:48], headerIndex), hdr[48:64], headerData(info.ID, info.Size)); err != nil {
		return nil, s.damage.Found(id, fmt.Errorf("sealed: %s: header authentication failed (the object was damaged, cut or moved, or written with another key): %w", id, resource.ErrDamaged))
	}
	src := &source{s: s, info: info, aead: aead, prefix: [8]byte(hdr[40:48]), nchunks: NumChunks(info.Size)}
	return chunkio.NewObject(ctx, s.b, string(id), f, src, info), nil
}

// source reads the chunks of an open sealed object.
type source struct {
	s       *Store
	info    resource.Info
	aead    cipher.AEAD
	prefix  [8]byte
	nchunks int64
}

// Span implements chunkio.Source.
func (o *source) Span(from, to int64) (int64, int64) {
	return HeaderSize + from*SealedChunk, min(HeaderSize+to*SealedChunk, StoredSize(o.info.Size))
}

// Chunk implements chunkio.Source: it reads chunk idx, authenticates it and
// decrypts it into dst.
func (o *source) Chunk(c *chunkio.Cursor, idx int64, dst []byte) ([]byte, error) {
	n := int64(SealedChunk)
	last := idx == o.nchunks-1
	if last {
		n = o.info.Size - idx*ChunkSize + TagSize
	}
	scr := c.Scratch()
	sealed := scr[:n]
	if err := c.ReadFull(sealed, HeaderSize+idx*SealedChunk); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, o.s.damage.Found(o.info.ID, fmt.Errorf("sealed: %s: chunk %d is cut short: %w", o.info.ID, idx, resource.ErrDamaged))
		}
		return nil, fmt.Errorf("sealed: %s: reading chunk %d: %w", o.info.ID, idx, err)
	}
	// The nonce and the additional data in the scratch space, not on the
	// heap per chunk.
	nb, ad := (*[12]byte)(scr[SealedChunk:]), scr[SealedChunk+12:SealedChunk+13]
	ad[0] = 0
	if last {
		ad[0] = 1
	}
	p, err := o.aead.Open(dst[:0], nonce(nb, o.prefix[:], uint32(idx)), sealed, ad)
	if err != nil {
		return nil, o.s.damage.Found(o.info.ID, fmt.Errorf("sealed: %s: chunk %d failed authentication: %w", o.info.ID, idx, resource.ErrDamaged))
	}
	return p, nil
}

// Remove implements resource.Remover.
func (s *Store) Remove(ctx context.Context, id resource.ID) error {
	id, err := parse(id)
	if err != nil {
		return err
	}
	if err := s.b.Delete(ctx, string(id)); err != nil {
		return fmt.Errorf("sealed: remove: %w", err)
	}
	s.damage.Forget(id)
	return nil
}

// Enumerate implements resource.Enumerator. Objects that are not named by
// an ID are skipped; one whose size no writer produces is reported with
// Size -1.
func (s *Store) Enumerate(ctx context.Context, fn func(resource.Info) error) error {
	size := func(n int64) int64 {
		if p, err := PlainSize(n); err == nil {
			return p
		}
		return -1
	}
	if err := chunkio.Enumerate(ctx, s.b, size, fn); err != nil {
		return fmt.Errorf("sealed: enumerate: %w", err)
	}
	return nil
}
