// Package upload holds resumable upload sessions: a client declares a
// resource's size, sends its bytes in as many requests as its connection
// allows, and the server commits the resource once the last byte has arrived
// (docs/PROTOCOL.md §8.14). Bytes that arrived before a connection dropped
// stay staged, so a client resumes where the server's offset says rather
// than from the start.
//
// A Staging keeps the sessions and their bytes until the mailbox commits
// them into the resource store (package resource); it does not know users'
// rights nor the resource store. Implementations: FS (files in the data
// directory). A later S3 implementation can map a session to a multipart
// upload. Every implementation runs upload/stagingtest.
package upload

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/pullmail/pullmail/resource"
)

// ErrNotFound is returned for a session that does not exist (or has been
// deleted or expired and collected).
var ErrNotFound = errors.New("upload: no such session")

// ErrExists is returned by Create for a session ID that is taken.
var ErrExists = errors.New("upload: session exists")

// ErrOffset is returned by Append when the offset is not the session's.
var ErrOffset = errors.New("upload: offset mismatch")

// ErrPastSize is returned by Append when the bytes run past the session's
// declared size. Nothing of that call is kept.
var ErrPastSize = errors.New("upload: bytes past the declared size")

// ErrBadOffset is returned by ParseOffset.
var ErrBadOffset = errors.New("upload: malformed offset")

// Session is one resumable upload.
type Session struct {
	ID     string      // "u" and 24 base32 characters: see NewID
	UserID int64       // whose session it is; the mailbox checks it
	Size   int64       // the declared size in bytes, >= 0
	Offset int64       // bytes staged so far, 0..Size
	Want   resource.ID // the declared Content-ID, or ""
	// Digest is the ID of the staged bytes, set once Offset == Size.
	Digest resource.ID
	// ContentID is set by Complete: the bytes are committed as that
	// resource and no longer staged.
	ContentID resource.ID
	Created   time.Time
	Expires   time.Time
}

// Full reports whether every byte has been staged.
func (s Session) Full() bool { return s.Offset == s.Size }

// Staging stores sessions and their bytes. It is safe for concurrent use;
// the Appends of one session run one at a time (a second waits for the
// first, or for its context).
type Staging interface {
	// Create stores a new session with Offset 0 (ErrExists if its ID is
	// taken). The ID must satisfy ValidID and Size must be >= 0.
	Create(ctx context.Context, s Session) error
	// Get returns a session (ErrNotFound). Expired sessions are returned
	// until Expire collects them: the caller checks Expires.
	Get(ctx context.Context, id string) (Session, error)
	// Append stages r's bytes at offset, which must be the session's Offset
	// (ErrOffset otherwise, with the session as it is). Bytes past Size fail
	// the call with ErrPastSize; those up to Size are kept like any others.
	// When r fails (a dropped connection), the bytes read before the
	// failure are kept and counted: Append returns the session as it is
	// after the call, with r's error. A session whose ContentID is set
	// takes no bytes (ErrPastSize) but an empty Append at Size succeeds.
	// Out of space (errs.NoSpace of the error), Append gives back what it
	// wrote, so that a full disk does not stay full for the session's
	// lifetime: the session returned is as the call found it (at worst at
	// its last durable offset within the call).
	// Durability: when Append returns, what it counted survives a crash.
	Append(ctx context.Context, id string, offset int64, r io.Reader) (Session, error)
	// Open reads the staged bytes of a full session (Offset == Size) that
	// is not complete. The caller closes it.
	Open(ctx context.Context, id string) (io.ReadCloser, error)
	// Complete records that the staged bytes have been committed as the
	// resource cid and frees them; the session stays (for Get) until it
	// expires. Completing a completed session again is not an error.
	Complete(ctx context.Context, id string, cid resource.ID) (Session, error)
	// Delete removes a session and its bytes; a missing one is not an error.
	Delete(ctx context.Context, id string) error
	// Expire removes the sessions that expired before the time, and any
	// leftovers of interrupted creations older than it; it returns how many
	// sessions it removed.
	Expire(ctx context.Context, before time.Time) (int, error)
}

// NewID returns a new random session ID: "u" and 24 lower-case base32
// characters (120 bits).
func NewID() string {
	var b [15]byte
	rand.Read(b[:])
	return "u" + strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// ValidID reports whether id has the shape NewID gives. Implementations use
// ids in file and object names, so nothing else is accepted.
func ValidID(id string) bool {
	if len(id) != 25 || id[0] != 'u' {
		return false
	}
	for i := 1; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// ParseOffset parses an Upload-Offset header value: a non-negative decimal
// integer of at most 18 digits (enough for any size), without sign,
// spaces or other characters. Leading zeros are accepted.
func ParseOffset(s string) (int64, error) {
	if len(s) == 0 || len(s) > 18 {
		return 0, ErrBadOffset
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, ErrBadOffset
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}
