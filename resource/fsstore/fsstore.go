package fsstore

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/sealed"
)

// KeySize is the size of an encryption key: AES-256.
const KeySize = sealed.KeySize

// Options configure a Store.
type Options struct {
	// Key, when set, encrypts every resource at rest (see the package doc).
	// It must be KeySize bytes and must not be kept in the store's directory.
	Key []byte
	// Shared opens a directory that another process (the running server)
	// may be using, as pullmail fsck does: New leaves tmp/ alone, since the
	// uploads in progress there are the other process's.
	Shared bool
	// OnDamage, when set, is called once for each resource found damaged
	// (resource.ErrDamaged) until it is repaired or removed: the server
	// counts them (pullmail_resource_damaged_total). It must not block.
	OnDamage func(resource.ID)
	// Log receives a line for each damaged resource found (default: none).
	Log *slog.Logger
}

// Store is a resource.Store on a directory. It is safe for concurrent use.
type Store struct {
	root *os.Root
	key  []byte // nil for plain storage
	// sealed serves an encrypted store: resource/sealed over the
	// directory (Bucket), whose format is this package's.
	sealed *sealed.Store
	// bufs holds chunk buffers for plain objects.
	bufs sync.Pool
	// layout is the format's version: 2 keeps blobs in blobs/ab/, 1 (stores
	// made before 2026-11) in blobs/ab/cd/.
	layout int
	// dirs holds the blob directories known to exist, so that a Put into
	// one needs no stat, let alone a mkdir and two directory fsyncs.
	dirs sync.Map
	// bad holds the IDs found damaged since New and not stored or removed
	// since, so that each is counted (damages, OnDamage) once.
	bad      sync.Map
	damages  atomic.Uint64
	onDamage func(resource.ID)
	log      *slog.Logger
}

var _ resource.Store = (*Store)(nil)

const (
	blobsDir   = "blobs"
	tmpDir     = "tmp"
	formatFile = "format"
	formatName = "pullmail-fsstore"
	// formatNew is the version New gives a new store. Version 2 has one
	// level of 4096 directories under blobs/; version 1 had two levels of
	// 4096 each, so that nearly every small Put made two new directories
	// (a mkdir and two directory fsyncs: a tenth of a busy domain's CPU,
	// pullmail bench workload 4). Version 1 stores keep their layout.
	formatNew = 2
)

// New opens the store in dir, creating dir and its layout if needed, and
// removes whatever an interrupted upload left in tmp/.
func New(dir string, opt Options) (*Store, error) {
	if opt.Key != nil && len(opt.Key) != KeySize {
		return nil, fmt.Errorf("fsstore: key is %d bytes, want %d", len(opt.Key), KeySize)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fsstore: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("fsstore: %w", err)
	}
	s := &Store{root: root, onDamage: opt.OnDamage, log: opt.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opt.Key != nil {
		s.key = append([]byte(nil), opt.Key...)
	}
	if err := s.init(opt.Shared); err != nil {
		root.Close()
		return nil, fmt.Errorf("fsstore: %s: %w", dir, err)
	}
	if s.key != nil {
		if s.sealed, err = sealed.New(s.Bucket(), s.key, sealed.Options{OnDamage: opt.OnDamage, Log: opt.Log}); err != nil {
			root.Close()
			return nil, fmt.Errorf("fsstore: %w", err)
		}
	}
	return s, nil
}

func (s *Store) init(shared bool) error {
	for _, d := range []string{blobsDir, tmpDir} {
		if err := s.root.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	if shared {
		return s.checkFormat()
	}
	// Crash recovery: nothing in tmp/ was ever committed.
	ents, err := fs.ReadDir(s.root.FS(), tmpDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := s.root.RemoveAll(path.Join(tmpDir, e.Name())); err != nil {
			return fmt.Errorf("removing an interrupted upload: %w", err)
		}
	}
	return s.checkFormat()
}

// formatLine is what the format file holds for this store's options, in
// format version v.
func (s *Store) formatLine(v int) string {
	name := formatName + " " + strconv.Itoa(v)
	if s.key == nil {
		return name + " plain\n"
	}
	return name + " aes-256-gcm key-check=" + sealed.KeyCheck(s.key) + "\n"
}

// checkFormat reads the format file, or writes it for a new store, and sets
// s.layout.
func (s *Store) checkFormat() error {
	got, err := s.root.ReadFile(formatFile)
	if errors.Is(err, fs.ErrNotExist) {
		s.layout = formatNew
		return s.writeFormat(s.formatLine(formatNew))
	}
	if err != nil {
		return err
	}
	for _, v := range []int{2, 1} {
		if subtle.ConstantTimeCompare(got, []byte(s.formatLine(v))) == 1 {
			s.layout = v
			return nil
		}
	}
	g := string(got)
	rest, ok := strings.CutPrefix(g, formatName+" 2 ")
	if !ok {
		rest, ok = strings.CutPrefix(g, formatName+" 1 ")
	}
	switch {
	case !ok:
		return fmt.Errorf("unknown store format %q", strings.TrimSpace(g))
	case strings.HasPrefix(rest, "plain") && s.key != nil:
		return errors.New("the store is not encrypted but a key was given")
	case strings.HasPrefix(rest, "aes-256-gcm") && s.key == nil:
		return errors.New("the store is encrypted and no key was given")
	case strings.HasPrefix(rest, "aes-256-gcm"):
		return errors.New("the store is encrypted with another key")
	}
	return fmt.Errorf("unknown store format %q", strings.TrimSpace(g))
}

func (s *Store) writeFormat(line string) error {
	tmp := path.Join(tmpDir, "format-"+rand.Text())
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer s.root.Remove(tmp)
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// Link, not rename: two processes creating the store at once must not
	// replace each other's format.
	if err := s.root.Link(tmp, formatFile); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return s.checkFormat() // another process made it first
		}
		return err
	}
	return s.syncDir(".")
}

// Encrypted reports whether the store in dir is encrypted at rest, from its
// format file, so that a tool opening a server's store knows whether it needs
// the key. It fails with fs.ErrNotExist when dir holds no store.
func Encrypted(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, formatFile))
	if err != nil {
		return false, fmt.Errorf("fsstore: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) < 3 || f[0] != formatName {
		return false, fmt.Errorf("fsstore: %s: unknown store format %q", dir, strings.TrimSpace(string(b)))
	}
	return f[2] == "aes-256-gcm", nil
}

// Close releases the directory.
func (s *Store) Close() error { return s.root.Close() }

// blobPath is where id lives; id must have been parsed.
func (s *Store) blobPath(id resource.ID) (dir, name string) {
	if s.layout == 1 {
		dir = path.Join(blobsDir, string(id[0:2]), string(id[2:4]))
	} else {
		dir = path.Join(blobsDir, string(id[0:2]))
	}
	return dir, path.Join(dir, string(id))
}

func parse(s resource.ID) (resource.ID, error) {
	id, err := resource.ParseID(string(s))
	if err != nil {
		return "", fmt.Errorf("fsstore: %q: %w", s, err)
	}
	return id, nil
}

// Put implements resource.Putter. A resource already stored is replaced by
// the new copy (a rename, which readers of the old one do not notice), so
// that a Put of the right bytes repairs a damaged copy.
func (s *Store) Put(ctx context.Context, r io.Reader, opt resource.PutOptions) (resource.Info, error) {
	if s.sealed != nil {
		return s.sealed.Put(ctx, r, opt)
	}
	if err := ctx.Err(); err != nil {
		return resource.Info{}, fmt.Errorf("fsstore: put: %w", err)
	}
	tmp := path.Join(tmpDir, rand.Text())
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return resource.Info{}, fmt.Errorf("fsstore: put: %w", err)
	}
	committed := false
	var sums *sumsFile // a plain blob's sidecar
	withSums := false  // it has one (more than one chunk)
	defer func() {
		if !committed {
			f.Close()
			s.root.Remove(tmp)
		}
		if sums != nil {
			sums.discard() // no-op once renamed
		}
	}()

	sums = s.newSumsFile()
	id, size, err := resource.Copy(ctx, io.MultiWriter(newWriteback(f, 0), sums.z), r, opt)
	if err == nil {
		withSums, err = sums.finish(id, size)
	}
	if err != nil {
		return resource.Info{}, fmt.Errorf("fsstore: put: %w", err)
	}
	if err := f.Sync(); err != nil {
		return resource.Info{}, fmt.Errorf("fsstore: put %s: %w", id, err)
	}
	if err := f.Close(); err != nil {
		return resource.Info{}, fmt.Errorf("fsstore: put %s: %w", id, err)
	}
	// The last chance to give up: after this the resource is stored.
	if err := ctx.Err(); err != nil {
		return resource.Info{}, fmt.Errorf("fsstore: put %s: %w", id, err)
	}

	dir, name := s.blobPath(id)
	// The sidecar goes first: a crash between the two renames leaves the
	// old copy (or none) beside the sums of id's bytes, which describe
	// every good copy of id. Concurrent identical Puts may all rename:
	// each file is complete and equivalent, the last one wins.
	if withSums {
		if err := s.renameInto(dir, sums.name, name+sumsSuffix); err != nil {
			return resource.Info{}, fmt.Errorf("fsstore: put %s: %w", id, err)
		}
	}
	if err := s.renameInto(dir, tmp, name); err != nil {
		return resource.Info{}, fmt.Errorf("fsstore: put %s: %w", id, err)
	}
	committed = true
	if err := s.syncDir(dir); err != nil {
		return resource.Info{}, fmt.Errorf("fsstore: put %s: %w", id, err)
	}
	s.bad.Delete(id)
	return s.Stat(ctx, id)
}

// renameInto moves a file of tmp/ into the blob directory dir, making dir
// if needed.
func (s *Store) renameInto(dir, from, to string) error {
	if err := s.mkdirs(dir); err != nil {
		return err
	}
	err := s.root.Rename(from, to)
	if errors.Is(err, fs.ErrNotExist) {
		// The directory went away behind our back (an operator's
		// cleanup): forget it and make it again.
		s.dirs.Delete(dir)
		if err = s.mkdirs(dir); err == nil {
			err = s.root.Rename(from, to)
		}
	}
	return err
}

// damaged counts id as damaged, the first time since it was last stored,
// and returns err, which wraps resource.ErrDamaged.
func (s *Store) damaged(id resource.ID, err error) error {
	if _, seen := s.bad.LoadOrStore(id, true); !seen {
		s.damages.Add(1)
		s.log.Error("fsstore: stored resource is damaged; run pullmail fsck --repair", "resource", id, "err", err)
		if s.onDamage != nil {
			s.onDamage(id)
		}
	}
	return err
}

// DamageCount is how many resources were found damaged since New, each
// counted once until it is stored again or removed: the value of
// pullmail_resource_damaged_total.
func (s *Store) DamageCount() uint64 {
	if s.sealed != nil {
		return s.sealed.DamageCount()
	}
	return s.damages.Load()
}

// mkdirs creates a blob directory (blobs/ab, or blobs/ab/cd in layout 1)
// and makes the new directory entries durable.
func (s *Store) mkdirs(dir string) error {
	if _, ok := s.dirs.Load(dir); ok {
		return nil
	}
	if _, err := s.root.Stat(dir); err == nil {
		s.dirs.Store(dir, true)
		return nil
	}
	if err := s.root.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for d := path.Dir(dir); ; d = path.Dir(d) {
		if err := s.syncDir(d); err != nil {
			return err
		}
		if d == blobsDir {
			break
		}
	}
	s.dirs.Store(dir, true)
	return nil
}

func (s *Store) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Stat implements resource.Statter.
func (s *Store) Stat(ctx context.Context, id resource.ID) (resource.Info, error) {
	if s.sealed != nil {
		return s.sealed.Stat(ctx, id)
	}
	id, err := parse(id)
	if err != nil {
		return resource.Info{}, err
	}
	_, name := s.blobPath(id)
	fi, err := s.root.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return resource.Info{}, fmt.Errorf("fsstore: %s: %w", id, resource.ErrNotFound)
	}
	if err != nil {
		return resource.Info{}, fmt.Errorf("fsstore: %w", err)
	}
	return s.info(id, fi)
}

func (s *Store) info(id resource.ID, fi fs.FileInfo) (resource.Info, error) {
	if !fi.Mode().IsRegular() {
		return resource.Info{}, fmt.Errorf("fsstore: %s: not a regular file", id)
	}
	return resource.Info{ID: id, Size: fi.Size(), Created: fi.ModTime()}, nil
}

// Open implements resource.Fetcher. The Object also implements io.ReaderAt.
// A plain blob without a valid sidecar (stored before sidecars, or its
// sidecar damaged) is read and checked whole here, once, and gets one.
func (s *Store) Open(ctx context.Context, id resource.ID) (resource.Object, error) {
	if s.sealed != nil {
		return s.sealed.Open(ctx, id)
	}
	id, err := parse(id)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fsstore: open %s: %w", id, err)
	}
	_, name := s.blobPath(id)
	f, err := s.root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("fsstore: %s: %w", id, resource.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("fsstore: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("fsstore: %w", err)
	}
	info, err := s.info(id, fi)
	if err != nil {
		f.Close()
		if errors.Is(err, resource.ErrDamaged) {
			s.damaged(id, err)
		}
		return nil, err
	}
	src, err := s.openPlain(ctx, f, name, info)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("fsstore: open %s: %w", id, err)
	}
	return s.newObject(src, info), nil
}

// Remove implements resource.Remover.
func (s *Store) Remove(ctx context.Context, id resource.ID) error {
	if s.sealed != nil {
		return s.sealed.Remove(ctx, id)
	}
	id, err := parse(id)
	if err != nil {
		return err
	}
	_, name := s.blobPath(id)
	if err := s.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fsstore: remove: %w", err)
	}
	if err := s.removeSums(name); err != nil {
		return fmt.Errorf("fsstore: remove: %w", err)
	}
	s.bad.Delete(id)
	return nil
}

// Enumerate implements resource.Enumerator. It skips whatever under blobs/ is
// not a resource in its place. An encrypted file whose length no writer could
// have produced is reported with Size -1.
func (s *Store) Enumerate(ctx context.Context, fn func(resource.Info) error) error {
	if s.sealed != nil {
		return s.sealed.Enumerate(ctx, fn)
	}
	err := fs.WalkDir(s.root.FS(), blobsDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			// blobs, blobs/ab (and blobs/ab/cd in layout 1), nothing deeper.
			levels := 1
			if s.layout == 1 {
				levels = 2
			}
			if strings.Count(p, "/") > levels {
				return fs.SkipDir
			}
			return nil
		}
		id, err := resource.ParseID(d.Name())
		if err != nil {
			return nil
		}
		if _, want := s.blobPath(id); p != want || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile
		}
		if err != nil {
			return err
		}
		info, err := s.info(id, fi)
		if err != nil {
			info = resource.Info{ID: id, Size: -1, Created: fi.ModTime()}
		}
		return fn(info)
	})
	if err != nil {
		return fmt.Errorf("fsstore: enumerate: %w", err)
	}
	return nil
}

func seekPos(cur, size, offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += cur
	case io.SeekEnd:
		offset += size
	default:
		return 0, errors.New("fsstore: seek: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("fsstore: seek: negative position")
	}
	return offset, nil
}
