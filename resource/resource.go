// Package resource holds External Resources: content-addressed blobs named by
// the SHA-256 of their plain bytes (docs/PROTOCOL.md §Content-ID).
//
// A Store keeps one copy of each resource per domain. Who may read a resource
// is not the Store's business: the mailbox decides that through the messages a
// user owns (package mailbox), and the metadata store (package meta) keeps the
// references that decide when an unreferenced blob may be collected.
//
// Implementations: resource/fsstore (files in the data directory),
// resource/s3store (an S3-compatible bucket) and resource/memstore (memory,
// for tests), the last two built on resource/blobstore; resource/sealed
// encrypts at rest over the bucket of any of them (resource/bucket). Every
// implementation runs resource/storetest.
//
// Garbage collection is not the Store's: a Store removes what it is told to.
// That a removal never takes the bytes of an upload of the same digest
// under way is the metadata store's and the collector's: a resource is
// condemned in a transaction before its removal, and writers check for
// condemnations in theirs (see package meta, gc.go; mailbox.CollectGarbage).
// No modification time decides anything.
package resource

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"time"

	"github.com/pullmail/pullmail/errs"
)

// ID is a resource's Content-ID without angle brackets: the unpadded base64url
// encoding of the SHA-256 of the resource's plain bytes, always 43 characters.
type ID string

// EmptyID is the ID of the zero-length resource.
const EmptyID ID = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"

// ErrBadID is returned by ParseID for anything that is not a canonical ID.
var ErrBadID = errors.New("resource: malformed id")

// ErrNotFound is returned by a Store when it holds no resource with the ID.
var ErrNotFound = errors.New("resource: not found")

// ErrMismatch is returned by Put when the bytes do not match what the caller
// declared (digest or size). Nothing is stored then.
var ErrMismatch = errors.New("resource: content does not match the declared digest or size")

// ErrTooLarge is returned by Put when the bytes exceed the caller's limit.
var ErrTooLarge = errors.New("resource: too large")

// ErrDamaged is returned by an Object's reads (and by Open, Check) when the
// stored copy no longer holds the bytes its ID names: a flipped bit on disk,
// a cut or grown file, a file moved under another name. It is the store's
// fault, never the caller's; the copy stays until it is repaired (a Put of
// the right bytes replaces it, see Putter) or removed (pullmail fsck
// --repair).
var ErrDamaged = errors.New("resource: stored copy is damaged")

// ReadFailure is the error to answer for a failure to read a stored copy
// (docs/PROTOCOL.md §7): a damaged copy is 503 resource_damaged, since the
// fault is the server's and an operator can repair it (a reader, or
// another domain's MTA, may try again later); anything else is internal.
func ReadFailure(err error) error {
	if errors.Is(err, ErrDamaged) {
		return errs.Wrap(err, errs.Temporary, "resource_damaged",
			"the stored copy of this resource is damaged; the server's operator can repair it (pullmail fsck)")
	}
	return errs.Wrap(err, errs.Internal, "internal", "reading the resource failed")
}

// ParseID checks that s is a canonical ID: exactly 43 characters of the
// base64url alphabet that decode strictly (RawURLEncoding.Strict, so an
// aliased last character is refused) to 32 bytes. Angle brackets, padding,
// the +/ alphabet, escapes and whitespace are all refused.
func ParseID(s string) (ID, error) {
	if len(s) != 43 {
		return "", ErrBadID
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", ErrBadID
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return "", ErrBadID
	}
	return ID(s), nil
}

// IDFromSum returns the ID for a SHA-256 sum.
func IDFromSum(sum []byte) ID { return ID(base64.RawURLEncoding.EncodeToString(sum)) }

// IDOf returns the ID of b.
func IDOf(b []byte) ID {
	s := sha256.Sum256(b)
	return IDFromSum(s[:])
}

// Sum returns the 32-byte digest that id encodes. id must be canonical.
func (id ID) Sum() []byte {
	b, _ := base64.RawURLEncoding.DecodeString(string(id))
	return b
}

// ContentID returns the header form: "<id>".
func (id ID) ContentID() string { return "<" + string(id) + ">" }

// Info describes a stored resource.
type Info struct {
	ID   ID
	Size int64
	// Created is when this copy was committed, for people and tools;
	// garbage collection does not use it (package meta, gc.go).
	Created time.Time
}

// PutOptions says what the caller expects of the bytes of a Put.
type PutOptions struct {
	// Want, when set, is the ID the bytes must hash to.
	Want ID
	// Size, when >= 0, is the exact length the bytes must have.
	// Use -1 for "unknown".
	Size int64
	// Limit, when > 0, is the most bytes accepted.
	Limit int64
}

// Putter stores resources.
type Putter interface {
	// Put streams r into the store in constant memory, hashing while it
	// reads, and commits atomically: on any error (short read, mismatch,
	// limit, context cancelled, crash) nothing is left behind. Storing a
	// resource that is already there is not an error: the existing copy is
	// replaced by the new, verified bytes and their Info returned (two
	// identical uploads at once both succeed): so a Put of the right bytes
	// repairs a damaged copy (ErrDamaged) without anyone having to notice
	// the damage first.
	// Errors: ErrMismatch, ErrTooLarge, the reader's error, or the context's.
	Put(ctx context.Context, r io.Reader, opt PutOptions) (Info, error)
}

// Object is an open stored resource. ReadAt and Seek make HTTP Range cheap.
//
// No unverified byte leaves a Store: every read, whole or a Range, checks the
// stored bytes it returns before it returns any of them, and fails with an
// error wrapping ErrDamaged, having returned none of the damaged part, when
// they do not match the ID (fsstore checks by chunk: an encrypted store
// authenticates each chunk, a plain store compares each chunk with the
// SHA-256 its sidecar records). Parts of a damaged copy that are intact stay
// readable, so a reader learns of damage only where it reads it; Check reads
// the whole copy.
type Object interface {
	io.ReadSeekCloser
	Info() Info
}

// Fetcher opens resources.
type Fetcher interface {
	// Open returns the resource, or ErrNotFound. The caller closes it.
	Open(ctx context.Context, id ID) (Object, error)
}

// Statter reports on resources without opening them.
type Statter interface {
	// Stat returns the resource's Info, or ErrNotFound.
	Stat(ctx context.Context, id ID) (Info, error)
}

// Remover deletes resources.
type Remover interface {
	// Remove deletes the resource. Removing a missing resource is not an error.
	Remove(ctx context.Context, id ID) error
}

// Enumerator lists resources.
type Enumerator interface {
	// Enumerate calls fn for every stored resource, in no particular order,
	// until fn returns an error, which Enumerate then returns.
	Enumerate(ctx context.Context, fn func(Info) error) error
}

// Store is everything a domain's resource store does. It is safe for
// concurrent use.
type Store interface {
	Putter
	Fetcher
	Statter
	Remover
	Enumerator
}
