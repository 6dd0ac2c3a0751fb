package upload

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/resource"
)

// FS is a Staging in a directory (the server uses DATA/uploads). Layout:
//
//	ID.data   the bytes staged so far (may run past the sidecar's offset
//	          after a crash: those bytes were never counted and are cut off)
//	ID.json   the sidecar: the Session and the SHA-256 state after Offset
//	          bytes (hash.Hash's MarshalBinary), replaced atomically
//	          (temporary file, fsync, rename, fsync of the directory)
//
// Append writes and fsyncs the bytes before it writes the sidecar that counts
// them, so the sidecar never counts a byte that is not on disk; a kill at any
// point leaves the last sidecar, whose offset and hash state describe a
// prefix of ID.data. Resuming after a restart does not re-read the staged
// bytes. A long Append writes a sidecar every CheckpointBytes, so a server
// killed mid-request keeps most of what it had received.
//
// One process owns a directory: Appends are serialised per session in
// memory, not by file locks.
type FS struct {
	dir string
	// CheckpointBytes is how many bytes a long Append stages between
	// sidecar writes (default 32 MiB).
	CheckpointBytes int64

	mu    sync.Mutex
	locks map[string]chan struct{}
}

var _ Staging = (*FS)(nil)

// NewFS returns a Staging in dir, creating it (0700) if needed.
func NewFS(dir string) (*FS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	return &FS{dir: dir, CheckpointBytes: 32 << 20, locks: map[string]chan struct{}{}}, nil
}

// sidecar is the JSON of ID.json.
type sidecar struct {
	ID        string      `json:"id"`
	UserID    int64       `json:"user_id"`
	Size      int64       `json:"size"`
	Offset    int64       `json:"offset"`
	Want      resource.ID `json:"want,omitempty"`
	Digest    resource.ID `json:"digest,omitempty"`
	ContentID resource.ID `json:"content_id,omitempty"`
	Created   time.Time   `json:"created"`
	Expires   time.Time   `json:"expires"`
	// State is the SHA-256 state after Offset bytes.
	State []byte `json:"sha256_state,omitempty"`
}

func (c sidecar) session() Session {
	return Session{ID: c.ID, UserID: c.UserID, Size: c.Size, Offset: c.Offset, Want: c.Want, Digest: c.Digest,
		ContentID: c.ContentID, Created: c.Created, Expires: c.Expires}
}

// parseSidecar decodes and checks a sidecar file.
func parseSidecar(b []byte) (sidecar, error) {
	var c sidecar
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return sidecar{}, err
	}
	switch {
	case !ValidID(c.ID):
		return sidecar{}, errors.New("bad id")
	case c.Size < 0 || c.Offset < 0 || c.Offset > c.Size:
		return sidecar{}, fmt.Errorf("bad offset %d of size %d", c.Offset, c.Size)
	case c.ContentID == "" && len(c.State) == 0:
		return sidecar{}, errors.New("no hash state")
	}
	for _, id := range []resource.ID{c.Want, c.Digest, c.ContentID} {
		if id != "" {
			if _, err := resource.ParseID(string(id)); err != nil {
				return sidecar{}, err
			}
		}
	}
	if c.ContentID == "" {
		if _, err := restore(c.State); err != nil {
			return sidecar{}, err
		}
	}
	return c, nil
}

func restore(state []byte) (hash.Hash, error) {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, fmt.Errorf("hash state: %w", err)
	}
	return h, nil
}

func (f *FS) data(id string) string { return filepath.Join(f.dir, id+".data") }
func (f *FS) side(id string) string { return filepath.Join(f.dir, id+".json") }

// lock takes the session's lock, waiting for ctx at most.
func (f *FS) lock(ctx context.Context, id string) (unlock func(), err error) {
	f.mu.Lock()
	ch, ok := f.locks[id]
	if !ok {
		ch = make(chan struct{}, 1)
		f.locks[id] = ch
	}
	f.mu.Unlock()
	select {
	case ch <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return func() {
		f.mu.Lock()
		<-ch
		if len(ch) == 0 {
			delete(f.locks, id) // a waiter holds its own reference to ch
		}
		f.mu.Unlock()
	}, nil
}

func (f *FS) read(id string) (sidecar, error) {
	if !ValidID(id) {
		return sidecar{}, ErrNotFound
	}
	b, err := os.ReadFile(f.side(id))
	if errors.Is(err, fs.ErrNotExist) {
		return sidecar{}, ErrNotFound
	} else if err != nil {
		return sidecar{}, fmt.Errorf("upload: %s: %w", id, err)
	}
	c, err := parseSidecar(b)
	if err == nil && c.ID != id {
		err = fmt.Errorf("names session %s", c.ID)
	}
	if err != nil {
		return sidecar{}, fmt.Errorf("upload: %s: corrupt sidecar: %w", id, err)
	}
	return c, nil
}

// write replaces the sidecar atomically and durably.
func (f *FS) write(c sidecar) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(f.dir, "."+c.ID+".json.*")
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.side(c.ID))
	}
	if err == nil {
		err = syncDir(f.dir)
	}
	if err != nil {
		return fmt.Errorf("upload: %s: writing sidecar: %w", c.ID, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Create implements Staging.
func (f *FS) Create(ctx context.Context, s Session) error {
	if !ValidID(s.ID) || s.Size < 0 {
		return fmt.Errorf("upload: create %q of size %d: invalid session", s.ID, s.Size)
	}
	unlock, err := f.lock(ctx, s.ID)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(f.side(s.ID)); err == nil {
		return ErrExists
	}
	// The data file first: a crash before the sidecar leaves an orphan
	// that Expire removes; the session does not exist until its sidecar.
	d, err := os.OpenFile(f.data(s.ID), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("upload: create %s: %w", s.ID, err)
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("upload: create %s: %w", s.ID, err)
	}
	state, _ := sha256.New().(encoding.BinaryMarshaler).MarshalBinary()
	c := sidecar{ID: s.ID, UserID: s.UserID, Size: s.Size, Want: s.Want, Created: s.Created, Expires: s.Expires, State: state}
	if s.Size == 0 {
		c.Digest = resource.EmptyID
	}
	return f.write(c)
}

// Get implements Staging.
func (f *FS) Get(ctx context.Context, id string) (Session, error) {
	c, err := f.read(id)
	if err != nil {
		return Session{}, err
	}
	return c.session(), nil
}

// appendBuf is the copy buffer of one Append.
const appendBuf = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, appendBuf); return &b }}

// Append implements Staging.
func (f *FS) Append(ctx context.Context, id string, offset int64, r io.Reader) (Session, error) {
	unlock, err := f.lock(ctx, id)
	if err != nil {
		return Session{}, err
	}
	defer unlock()
	c, err := f.read(id)
	if err != nil {
		return Session{}, err
	}
	if offset != c.Offset {
		return c.session(), ErrOffset
	}
	if c.ContentID != "" || c.Offset == c.Size {
		// Nothing more may come: an empty body is fine.
		var one [1]byte
		n, err := io.ReadFull(r, one[:])
		if n > 0 {
			return c.session(), ErrPastSize
		}
		if err != nil && err != io.EOF {
			return c.session(), err
		}
		return c.session(), nil
	}
	h, err := restore(c.State)
	if err != nil {
		return Session{}, fmt.Errorf("upload: %s: %w", id, err)
	}
	d, err := os.OpenFile(f.data(id), os.O_WRONLY, 0)
	if err != nil {
		return Session{}, fmt.Errorf("upload: %s: %w", id, err)
	}
	defer d.Close()
	// Cut off what a crash may have left past the counted bytes.
	if err := d.Truncate(c.Offset); err != nil {
		return Session{}, fmt.Errorf("upload: %s: %w", id, err)
	}
	if _, err := d.Seek(c.Offset, io.SeekStart); err != nil {
		return Session{}, fmt.Errorf("upload: %s: %w", id, err)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	start := c      // the session as the call found it
	pos := c.Offset // bytes written and hashed
	// fail ends the call on a write error. Out of space, it gives back
	// every byte of this call, so that a full disk does not stay full for
	// the session's lifetime (docs/PROTOCOL.md §8.14).
	fail := func(err error) (Session, error) {
		if errs.NoSpace(err) {
			c = f.release(d, start, c)
		}
		return c.session(), err
	}
	checkpoint := func() error {
		if pos == c.Offset {
			return nil
		}
		if err := d.Sync(); err != nil {
			return fmt.Errorf("upload: %s: %w", id, err)
		}
		next := c
		next.Offset = pos
		if next.State, err = h.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
			return fmt.Errorf("upload: %s: %w", id, err)
		}
		if next.Offset == next.Size {
			next.Digest = resource.IDFromSum(h.Sum(nil))
		}
		if err := f.write(next); err != nil {
			return err
		}
		c = next
		return nil
	}
	every := f.CheckpointBytes
	if every <= 0 {
		every = 32 << 20
	}
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			past := pos+int64(n) > c.Size
			if past {
				n = int(c.Size - pos) // keep the bytes up to Size
			}
			if _, err := d.Write(buf[:n]); err != nil {
				return fail(fmt.Errorf("upload: %s: %w", id, err))
			}
			h.Write(buf[:n])
			pos += int64(n)
			if past {
				if err := checkpoint(); err != nil {
					return fail(err)
				}
				return c.session(), ErrPastSize
			}
			if pos-c.Offset >= every {
				if err := checkpoint(); err != nil {
					return fail(err)
				}
			}
		}
		if rerr != nil {
			if err := checkpoint(); err != nil {
				return fail(err)
			}
			if rerr == io.EOF {
				return c.session(), nil
			}
			return c.session(), rerr
		}
	}
}

// release gives back the bytes an Append wrote since it began, after a
// write or a checkpoint ran out of space: first the bytes past the last
// sidecar (cur, which stays valid whatever happens next), then, if the
// call had checkpointed, the sidecar is put back to start's and the data
// cut to it. It returns the session the files describe afterwards. The
// sidecar is tiny and is written after the cut has freed space; if even
// that fails, the session stays at cur, consistent.
func (f *FS) release(d *os.File, start, cur sidecar) sidecar {
	if d.Truncate(cur.Offset) != nil {
		return cur // the next Append cuts it, as after a crash
	}
	if cur.Offset == start.Offset || f.write(start) != nil {
		return cur
	}
	d.Truncate(start.Offset) // if it fails, the next Append cuts the uncounted rest
	return start
}

// Open implements Staging.
func (f *FS) Open(ctx context.Context, id string) (io.ReadCloser, error) {
	c, err := f.read(id)
	if err != nil {
		return nil, err
	}
	if c.ContentID != "" || c.Offset != c.Size {
		return nil, fmt.Errorf("upload: open %s: not full (%d of %d bytes) or already complete", id, c.Offset, c.Size)
	}
	d, err := os.Open(f.data(id))
	if err != nil {
		return nil, fmt.Errorf("upload: open %s: %w", id, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(d, c.Size), d}, nil
}

// Complete implements Staging.
func (f *FS) Complete(ctx context.Context, id string, cid resource.ID) (Session, error) {
	unlock, err := f.lock(ctx, id)
	if err != nil {
		return Session{}, err
	}
	defer unlock()
	c, err := f.read(id)
	if err != nil {
		return Session{}, err
	}
	if c.ContentID == "" {
		if c.Offset != c.Size {
			return Session{}, fmt.Errorf("upload: complete %s: only %d of %d bytes", id, c.Offset, c.Size)
		}
		c.ContentID, c.State = cid, nil
		if err := f.write(c); err != nil {
			return Session{}, err
		}
	}
	if err := os.Remove(f.data(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Session{}, fmt.Errorf("upload: complete %s: %w", id, err)
	}
	return c.session(), nil
}

// Delete implements Staging.
func (f *FS) Delete(ctx context.Context, id string) error {
	if !ValidID(id) {
		return nil
	}
	unlock, err := f.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	return f.remove(id)
}

// remove deletes the sidecar first: from then on the session is gone.
func (f *FS) remove(id string) error {
	if err := os.Remove(f.side(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("upload: delete %s: %w", id, err)
	}
	if err := os.Remove(f.data(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("upload: delete %s: %w", id, err)
	}
	return nil
}

// Expire implements Staging. A sidecar that cannot be read is left alone
// (and logged by the caller through the error) rather than guessed at.
func (f *FS) Expire(ctx context.Context, before time.Time) (int, error) {
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		return 0, fmt.Errorf("upload: expire: %w", err)
	}
	n := 0
	var errs []error
	for _, e := range ents {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		name := e.Name()
		id, ext, _ := strings.Cut(name, ".")
		switch {
		case ext == "json" && ValidID(id):
			c, err := f.read(id)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if !c.Expires.Before(before) {
				continue
			}
			unlock, err := f.lock(ctx, id)
			if err != nil {
				return n, err
			}
			err = f.remove(id)
			unlock()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			n++
		case ext == "data" && ValidID(id), id == "" && strings.HasPrefix(name, ".u"):
			// An orphan data file (a creation interrupted before its
			// sidecar) or a temporary sidecar left by a crash.
			if ext == "data" {
				if _, err := os.Stat(f.side(id)); err == nil {
					continue
				}
			}
			if info, err := e.Info(); err == nil && info.ModTime().Before(before) {
				os.Remove(filepath.Join(f.dir, name))
			}
		}
	}
	return n, errors.Join(errs...)
}
