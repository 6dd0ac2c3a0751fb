package resource

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
)

// CopyBufferSize is the size of the one buffer Copy streams through: memory
// per upload is constant whatever the resource's size.
const CopyBufferSize = 64 << 10

// Verifier is the one place where bytes enter a Store: it wraps a reader,
// hashes what passes with SHA-256, counts it, and enforces a PutOptions.
//
//   - More than Limit bytes: Read fails with ErrTooLarge as soon as the
//     reader yields the first byte past the limit (that byte is not passed on).
//   - More than Size bytes: Read fails with ErrMismatch at once.
//   - At the reader's io.EOF: fewer than Size bytes, or a digest other than
//     Want, fail with ErrMismatch instead of io.EOF.
//
// Only a Read that returns io.EOF vouches for the bytes: a Store must commit
// nothing before it has seen it. A Verifier is not safe for concurrent use.
type Verifier struct {
	r   io.Reader
	opt PutOptions
	h   hash.Hash
	n   int64
	id  ID    // set once the bytes are verified
	err error // sticky
}

// NewVerifier returns a Verifier reading from r. It fails with ErrBadID when
// opt.Want is set but not a canonical ID.
func NewVerifier(r io.Reader, opt PutOptions) (*Verifier, error) {
	if opt.Want != "" {
		if _, err := ParseID(string(opt.Want)); err != nil {
			return nil, fmt.Errorf("resource: declared digest %q: %w", opt.Want, err)
		}
	}
	return &Verifier{r: r, opt: opt, h: sha256.New()}, nil
}

// Read reads from the underlying reader, see Verifier.
func (v *Verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	if n < 0 || n > len(p) {
		v.err = errors.New("resource: reader returned an invalid count")
		return 0, v.err
	}
	if lim := v.opt.Limit; lim > 0 && v.n+int64(n) > lim {
		v.err = fmt.Errorf("%w: more than %d bytes", ErrTooLarge, lim)
		n = int(lim - v.n) // pass on what fits; the caller must discard it anyway
		v.h.Write(p[:n])
		v.n += int64(n)
		return n, v.err
	}
	if size := v.opt.Size; size >= 0 && v.n+int64(n) > size {
		v.err = fmt.Errorf("%w: more than the declared %d bytes", ErrMismatch, size)
		return 0, v.err
	}
	v.h.Write(p[:n])
	v.n += int64(n)
	switch {
	case err == io.EOF:
		v.err = v.finish()
		return n, v.err
	case err != nil:
		v.err = err
	}
	return n, err
}

func (v *Verifier) finish() error {
	if size := v.opt.Size; size >= 0 && v.n != size {
		return fmt.Errorf("%w: %d bytes, declared %d", ErrMismatch, v.n, size)
	}
	id := IDFromSum(v.h.Sum(nil))
	if v.opt.Want != "" && id != v.opt.Want {
		return fmt.Errorf("%w: digest %s, declared %s", ErrMismatch, id, v.opt.Want)
	}
	v.id = id
	return io.EOF
}

// N returns how many bytes have passed so far.
func (v *Verifier) N() int64 { return v.n }

// ID returns the verified ID once Read has returned io.EOF, and "" before or
// after any failure.
func (v *Verifier) ID() ID { return v.id }

// Copy streams src into dst through a Verifier and one CopyBufferSize
// buffer, checking ctx between reads (a reader blocked in Read is the
// caller's to unblock, e.g. by closing an HTTP body). It returns the ID and
// size of the bytes once they are verified; on any error dst has received
// bytes that must be discarded.
func Copy(ctx context.Context, dst io.Writer, src io.Reader, opt PutOptions) (ID, int64, error) {
	v, err := NewVerifier(src, opt)
	if err != nil {
		return "", 0, err
	}
	buf := make([]byte, CopyBufferSize)
	for {
		if err := ctx.Err(); err != nil {
			return "", v.N(), fmt.Errorf("resource: copy interrupted after %d bytes: %w", v.N(), err)
		}
		n, rerr := v.Read(buf)
		if n > 0 && rerr == nil || rerr == io.EOF {
			if _, err := dst.Write(buf[:n]); err != nil {
				return "", v.N(), fmt.Errorf("resource: writing: %w", err)
			}
		}
		if rerr == io.EOF {
			return v.ID(), v.N(), nil
		}
		if rerr != nil {
			return "", v.N(), rerr
		}
	}
}

// Check reads the whole stored copy of id through f and checks it against
// the ID: it returns the copy's Info when every byte hashes to it, an error
// wrapping ErrNotFound when there is no copy, and one wrapping ErrDamaged
// when the copy is damaged (a read failing with ErrDamaged, or bytes whose
// digest or length differ from what the ID and Info say). Other errors (a
// failing disk, ctx) are returned as they are: they say nothing of the copy.
// pullmail fsck runs it over every stored resource.
func Check(ctx context.Context, f Fetcher, id ID) (Info, error) {
	o, err := f.Open(ctx, id)
	if err != nil {
		return Info{}, err
	}
	defer o.Close()
	info := o.Info()
	// The Verifier of Copy hashes what the Object returns: the digest and
	// length the ID and Info declare are what the bytes must match.
	_, _, err = Copy(ctx, io.Discard, o, PutOptions{Want: id, Size: info.Size})
	if errors.Is(err, ErrMismatch) {
		return info, fmt.Errorf("resource: checking %s: %w: %w", id, ErrDamaged, err)
	}
	if err != nil {
		return info, fmt.Errorf("resource: checking %s: %w", id, err)
	}
	return info, nil
}
