// Package bucket is the seam beneath the content-addressed stores: a flat
// namespace of immutable, opaque objects, as S3, a directory or memory hold
// them. A resource.Store names its objects by Content-ID and checks their
// bytes (resource/blobstore keeps chunk sums beside plain bytes,
// resource/sealed encrypts them); a Bucket only keeps bytes under names, so
// that each of those layers is written once for every backend.
//
// resource.Store itself cannot be wrapped this way: it names what it stores by
// the SHA-256 of the stored bytes, so ciphertext put into it would land under
// the ciphertext's digest, not the plain Content-ID a reader asks for.
package bucket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrNotExist is returned (wrapped) for a name that holds no object.
var ErrNotExist = errors.New("bucket: no such object")

// Attrs describe an object.
type Attrs struct {
	Size int64
	// Modified is when the object was committed.
	Modified time.Time
}

// CreateOptions say how an object will be written.
type CreateOptions struct {
	// Name, when known before the bytes are (the caller declared a
	// digest), is the only name Commit may then be given: a bucket may
	// write in place of staging and copying (S3 completes a multipart
	// upload under it once Commit is called), and may refuse another.
	Name string
	// Patch is how many leading bytes must stay patchable until Commit
	// (Writer.Patch): a header written once the stream has been verified.
	Patch int
	// Volatile says the object can be rebuilt from others (a sidecar of
	// chunk sums): a bucket may skip making it durable at Commit (a
	// directory skips its fsyncs), so a crash may lose it or leave it
	// short; the atomicity of Commit stays.
	Volatile bool
}

// Writer writes one new object. Nothing of it is visible under any name
// before Commit; Abort (or a failed Commit) leaves nothing behind. A Writer
// is not safe for concurrent use.
type Writer interface {
	io.Writer
	// Patch overwrites bytes already written, within the first
	// CreateOptions.Patch bytes.
	Patch(p []byte, off int64) error
	// Commit makes the bytes written the object called name, atomically:
	// a reader sees the old object (or none) or the whole new one. An
	// object already there is replaced.
	Commit(ctx context.Context, name string) error
	// Abort discards the object. It is a no-op after Commit, so that it
	// can be deferred.
	Abort() error
}

// Bucket holds objects. Names are ValidName strings. It is safe for
// concurrent use.
type Bucket interface {
	// Create starts a new object.
	Create(ctx context.Context, opt CreateOptions) (Writer, error)
	// Read returns n bytes of the object from off, or all from off to the
	// end when n < 0; off+n must not pass the end. The caller closes it.
	// Errors: ErrNotExist.
	Read(ctx context.Context, name string, off, n int64) (io.ReadCloser, error)
	// Stat returns the object's Attrs, or ErrNotExist.
	Stat(ctx context.Context, name string) (Attrs, error)
	// Delete removes the object; a missing one is no error.
	Delete(ctx context.Context, name string) error
	// List calls fn for every committed object, in no particular order,
	// until fn returns an error, which List returns.
	List(ctx context.Context, fn func(name string, a Attrs) error) error
}

// File is an object opened for reading anywhere, as a file is.
type File interface {
	io.ReaderAt
	io.Closer
	// Attrs are the object's, as of its opening.
	Attrs() Attrs
}

// Opener is a Bucket whose objects can be opened once and read at any
// offset (a directory): a store above then holds one File per open
// resource rather than a stream per read, and reads with no more system
// calls than a store of files would make.
type Opener interface {
	// Open opens the object, or fails with ErrNotExist.
	Open(ctx context.Context, name string) (File, error)
}

// ValidName reports whether name can name an object: 1 to 100 characters
// of [A-Za-z0-9_.-], not starting with a dot. Content-IDs and a suffix such
// as ".sums" fit; path separators and traversal do not.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 100 || name[0] == '.' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// CheckName returns an error for a name that is not ValidName.
func CheckName(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("bucket: invalid object name %q", name)
	}
	return nil
}

// Flip rewrites the object name of b with the bits of its byte at off
// inverted, as a failing disk would damage it: for the damage tests of the
// stores above a bucket.
func Flip(ctx context.Context, b Bucket, name string, off int64) error {
	r, err := b.Read(ctx, name, 0, -1)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return err
	}
	if off < 0 || off >= int64(len(data)) {
		return fmt.Errorf("bucket: flip %s at %d: it has %d bytes", name, off, len(data))
	}
	data[off] ^= 0xff
	w, err := b.Create(ctx, CreateOptions{})
	if err != nil {
		return err
	}
	defer w.Abort()
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Commit(ctx, name)
}
