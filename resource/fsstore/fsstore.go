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

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/blobstore"
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
	// Node, when set, names this process among the processes that share
	// the directory (the nodes of a domain on one file system: pullmail
	// serve --node): its uploads in progress go to tmp/NODE/, and New
	// clears that directory only, never another node's. It must be
	// unique among them, of at most 64 letters, digits, '.', '-' and '_',
	// not starting with '.'. Empty: tmp/ itself (one process only).
	Node string
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
	// rs serves the resources: resource/blobstore (plain) or
	// resource/sealed (encrypted) over the directory (Bucket), whose
	// formats are this package's.
	rs          resource.Store
	damageCount func() uint64
	// layout is the format's version: 2 keeps blobs in blobs/ab/, 1 (stores
	// made before 2026-11) in blobs/ab/cd/.
	layout int
	// dirs holds the blob directories known to exist, so that a Put into
	// one needs no stat, let alone a mkdir and two directory fsyncs.
	dirs sync.Map
	// tmp is where this process writes before committing: tmp/, or
	// tmp/NODE/ (Options.Node).
	tmp string
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
	if opt.Node != "" && !ValidNode(opt.Node) {
		return nil, fmt.Errorf("fsstore: node name %q: want at most 64 letters, digits, '.', '-' and '_', not starting with '.'", opt.Node)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("fsstore: %w", err)
	}
	s := &Store{root: root, tmp: path.Join(tmpDir, opt.Node)}
	if opt.Key != nil {
		s.key = append([]byte(nil), opt.Key...)
	}
	if err := s.init(opt.Shared); err != nil {
		root.Close()
		return nil, fmt.Errorf("fsstore: %s: %w", dir, err)
	}
	if s.key == nil {
		bs := blobstore.New(s.Bucket(), blobstore.Options{OnDamage: opt.OnDamage, Log: opt.Log})
		s.rs, s.damageCount = bs, bs.DamageCount
		return s, nil
	}
	ss, err := sealed.New(s.Bucket(), s.key, sealed.Options{OnDamage: opt.OnDamage, Log: opt.Log})
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("fsstore: %w", err)
	}
	s.rs, s.damageCount = ss, ss.DamageCount
	return s, nil
}

func (s *Store) init(shared bool) error {
	for _, d := range []string{blobsDir, tmpDir, s.tmp} {
		if err := s.root.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	if shared {
		return s.checkFormat()
	}
	// Crash recovery: nothing in this process's tmp/ was ever committed.
	// A node clears tmp/NODE/, and the files directly in tmp/ (left by a
	// run without a node name, before an upgrade), never another node's
	// directory.
	ents, err := fs.ReadDir(s.root.FS(), tmpDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if s.tmp != tmpDir && e.IsDir() {
			continue
		}
		if err := s.root.RemoveAll(path.Join(tmpDir, e.Name())); err != nil {
			return fmt.Errorf("removing an interrupted upload: %w", err)
		}
	}
	if s.tmp != tmpDir {
		ents, err := fs.ReadDir(s.root.FS(), s.tmp)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := s.root.RemoveAll(path.Join(s.tmp, e.Name())); err != nil {
				return fmt.Errorf("removing an interrupted upload: %w", err)
			}
		}
	}
	return s.checkFormat()
}

// ValidNode reports whether name may be a node's name (Options.Node): a
// single path element of at most 64 letters, digits, '.', '-' and '_',
// not starting with '.'.
func ValidNode(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '.' {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
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
	tmp := path.Join(s.tmp, "format-"+rand.Text())
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

// blobPath is where the object name (a resource's ID, or its sidecar's
// name) lives; name must have been checked.
func (s *Store) blobPath(name string) (dir, file string) {
	if s.layout == 1 {
		dir = path.Join(blobsDir, name[0:2], name[2:4])
	} else {
		dir = path.Join(blobsDir, name[0:2])
	}
	return dir, path.Join(dir, name)
}

// Put implements resource.Putter. A resource already stored is replaced by
// the new copy (a rename, which readers of the old one do not notice), so
// that a Put of the right bytes repairs a damaged copy.
func (s *Store) Put(ctx context.Context, r io.Reader, opt resource.PutOptions) (resource.Info, error) {
	return s.rs.Put(ctx, r, opt)
}

// Stat implements resource.Statter.
func (s *Store) Stat(ctx context.Context, id resource.ID) (resource.Info, error) {
	return s.rs.Stat(ctx, id)
}

// Open implements resource.Fetcher. The Object also implements io.ReaderAt.
// A plain blob without a valid sidecar (stored before sidecars, or its
// sidecar damaged) is read and checked whole here, once, and gets one.
func (s *Store) Open(ctx context.Context, id resource.ID) (resource.Object, error) {
	return s.rs.Open(ctx, id)
}

// Remove implements resource.Remover.
func (s *Store) Remove(ctx context.Context, id resource.ID) error {
	return s.rs.Remove(ctx, id)
}

// Enumerate implements resource.Enumerator. It skips whatever under blobs/ is
// not a resource in its place. An encrypted file whose length no writer could
// have produced is reported with Size -1.
func (s *Store) Enumerate(ctx context.Context, fn func(resource.Info) error) error {
	return s.rs.Enumerate(ctx, fn)
}

// DamageCount is how many resources were found damaged since New, each
// counted once until it is stored again or removed: the value of
// pullmail_resource_damaged_total.
func (s *Store) DamageCount() uint64 { return s.damageCount() }

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
