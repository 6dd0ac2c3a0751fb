package backup

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pullmail/pullmail/atomicfile"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/sqlite"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/fsstore"
)

// A backup directory (see doc.go for the format).
const (
	// Format is the first field of every manifest this package writes;
	// Restore refuses any other.
	Format = "pullmail-backup 1"
	// ManifestFile names the manifest in a backup directory.
	ManifestFile = "manifest.json"
	// ResourcesDir names the resource store (fsstore, plain) in it.
	ResourcesDir = "resources"
	metaPrefix   = "meta-"
	metaSuffix   = ".db"
	partial      = ".partial"
)

// Manifest is a backup's manifest.json: written last, atomically, by a
// backup that completed and verified, it names the metadata snapshot and
// lists every resource that snapshot references.
type Manifest struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	// Source says which stores were backed up (passwords hidden).
	Source string `json:"source,omitempty"`
	// Meta is the SQLite file of the snapshot, in the directory.
	Meta MetaFile `json:"meta"`
	// Resources is every resource the snapshot references, ordered by
	// ID: each is in resources/ with this size.
	Resources []ResourceEntry `json:"resources"`
	// Summary is the backup's (pullmail backup --json).
	Summary Summary `json:"summary"`
}

// MetaFile names the snapshot's SQLite file and what its bytes must be.
type MetaFile struct {
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex
}

// ResourceEntry is one resource of a backup.
type ResourceEntry struct {
	ID   resource.ID `json:"id"`
	Size int64       `json:"size"`
}

// ErrDamaged is in the chain of Restore's and Check's refusal of a
// directory that is not a whole, intact backup: no manifest (a first
// backup that did not finish, or not a backup at all), a manifest of
// another format, a metadata snapshot or a resource missing or differing
// from what the manifest says.
var ErrDamaged = errors.New("backup: not a whole, intact pullmail backup")

func damaged(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrDamaged, fmt.Sprintf(format, args...))
}

// BackupOptions tune Backup.
type BackupOptions struct {
	Options
	// Source describes the source stores for the manifest (no secrets).
	Source string
	// Attempts is how many snapshots Backup tries when garbage collection
	// removes a resource under it (ErrSourceChanged; default 3).
	Attempts int
}

// Backup writes a consistent snapshot of src into dir, a backup directory
// (created if needed), and returns its manifest. The source may be in use
// meanwhile: its metadata is read in one View, and every resource that
// snapshot references is stored in dir/resources unless it is there
// already (incremental: Summary.ResourcesCopied counts what this run
// copied). The new metadata file and manifest replace the previous ones
// only once the copy is whole and verified; until then dir holds the
// previous backup, intact. The caller keeps other writers out of dir
// (pullmail backup holds its lock).
func Backup(ctx context.Context, src Stores, dir string, opt BackupOptions) (Manifest, error) {
	if opt.Attempts <= 0 {
		opt.Attempts = 3
	}
	opt.Verify = true
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	prev, err := readManifest(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// A damaged manifest: the resources may still serve; the
		// metadata will be written anew.
		prev = Manifest{}
	}
	if err := removeStale(dir, prev.Meta.File); err != nil {
		return Manifest{}, err
	}
	res, err := fsstore.New(filepath.Join(dir, ResourcesDir), fsstore.Options{})
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: opening %s: %w", dir, err)
	}
	defer res.Close()
	for attempt := 1; ; attempt++ {
		m, err := backupOnce(ctx, src, dir, res, opt)
		if errors.Is(err, ErrSourceChanged) && attempt < opt.Attempts && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return m, err
		}
		if err := removeStale(dir, m.Meta.File); err != nil {
			return m, err
		}
		return m, nil
	}
}

func backupOnce(ctx context.Context, src Stores, dir string, res resource.Store, opt BackupOptions) (Manifest, error) {
	name := metaPrefix + time.Now().UTC().Format("20060102T150405.000000000Z") + metaSuffix
	tmp := filepath.Join(dir, name+partial)
	defer removeDB(tmp)
	st, err := sqlite.Open(ctx, tmp)
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	sum, refs, err := copyStores(ctx, src, Stores{Meta: st, Resources: res}, opt.Options)
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("backup: closing the snapshot: %w", cerr)
	}
	if err != nil {
		return Manifest{Summary: sum}, err
	}
	// The snapshot is complete in name only once the manifest names it:
	// until then the previous manifest stands, and the next backup
	// removes what this one left.
	final := filepath.Join(dir, name)
	if err := standalone(ctx, tmp, final); err != nil {
		os.Remove(final)
		return Manifest{}, err
	}
	mf, err := hashFile(final, nil)
	if err != nil {
		return Manifest{}, err
	}
	mf.File = name
	m := Manifest{Format: Format, Created: time.Now().UTC(), Source: opt.Source, Meta: mf, Summary: sum}
	for _, id := range slices.Sorted(maps.Keys(refs)) {
		m.Resources = append(m.Resources, ResourceEntry{ID: id, Size: refs[id]})
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, err
	}
	if err := syncDir(dir); err != nil { // the snapshot's rename, before the manifest names it
		return Manifest{}, err
	}
	if err := atomicfile.Replace(filepath.Join(dir, ManifestFile), append(b, '\n'), 0o600); err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	return m, syncDir(dir)
}

// standalone writes the closed SQLite database at path to dst as one
// file (VACUUM INTO: what its WAL holds included, no WAL of its own) and
// syncs it, so that dst's hash is the snapshot's and copying dst copies all
// of it. The store's Close alone does not promise a checkpoint: the last
// connection to close checkpoints only when no other holds the database.
func standalone(ctx context.Context, path, dst string) error {
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)") // the driver meta/sqlite registers
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		return fmt.Errorf("backup: writing the snapshot: %w", err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("backup: closing the snapshot: %w", err)
	}
	f, err := os.Open(dst)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("backup: syncing the snapshot: %w", err)
	}
	return nil
}

// removeStale removes the metadata files of dir other than keep: earlier
// snapshots, and whatever an interrupted backup left.
func removeStale(dir, keep string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, metaPrefix) || n == keep {
			continue
		}
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("backup: %w", err)
		}
	}
	return nil
}

func removeDB(path string) {
	for _, sfx := range []string{"", "-wal", "-shm"} {
		os.Remove(path + sfx)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("backup: syncing %s: %w", dir, err)
	}
	return nil
}

// hashFile returns the size and SHA-256 of the file, copying it to w
// as it reads when w is not nil.
func hashFile(path string, w io.Writer) (MetaFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return MetaFile{}, err
	}
	defer f.Close()
	h := sha256.New()
	var dst io.Writer = h
	if w != nil {
		dst = io.MultiWriter(h, w)
	}
	n, err := io.Copy(dst, f)
	if err != nil {
		return MetaFile{}, fmt.Errorf("reading %s: %w", path, err)
	}
	return MetaFile{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func readManifest(dir string) (Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return Manifest{}, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, damaged("%s: %v", ManifestFile, err)
	}
	if m.Format != Format {
		return Manifest{}, damaged("%s: format %q, want %q", ManifestFile, m.Format, Format)
	}
	if m.Meta.File != filepath.Base(m.Meta.File) || !strings.HasPrefix(m.Meta.File, metaPrefix) {
		return Manifest{}, damaged("%s: bad metadata file name %q", ManifestFile, m.Meta.File)
	}
	return m, nil
}

// RestoreOptions tune Restore.
type RestoreOptions struct {
	Options
	// Scratch is a directory for the copy of the snapshot that Restore
	// opens (the backup itself is only read); default os.TempDir().
	Scratch string
}

// Check reads the backup in dir whole, as Restore does before it writes
// anything: the manifest, the metadata snapshot against its size and
// SHA-256, every resource it lists (each read whole and hashed), and that
// the snapshot references no resource the manifest does not list. Every
// refusal is an ErrDamaged naming what is wrong. progress, when set, is
// called as for PhaseCheck.
func Check(ctx context.Context, dir string, progress func(Phase, int64, int64)) (Manifest, error) {
	m, scratch, err := check(ctx, dir, "", progress)
	if scratch != "" {
		removeDB(scratch)
	}
	return m, err
}

// check is Check, leaving the verified copy of the snapshot at scratch
// (the caller removes it).
func check(ctx context.Context, dir, scratchDir string, progress func(Phase, int64, int64)) (m Manifest, scratch string, err error) {
	if progress == nil {
		progress = func(Phase, int64, int64) {}
	}
	m, err = readManifest(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return m, "", damaged("%s has no %s (a first backup that did not finish, or not a backup)", dir, ManifestFile)
	}
	if err != nil {
		return m, "", fmt.Errorf("%s: %w", dir, err)
	}
	f, err := os.CreateTemp(scratchDir, "pullmail-restore-*.db")
	if err != nil {
		return m, "", fmt.Errorf("backup: scratch copy of the snapshot: %w", err)
	}
	scratch = f.Name()
	got, err := hashFile(filepath.Join(dir, m.Meta.File), f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, fs.ErrNotExist) {
		return m, scratch, damaged("%s: the metadata snapshot %s is missing", dir, m.Meta.File)
	}
	if err != nil {
		return m, scratch, fmt.Errorf("backup: %w", err)
	}
	if got.Size != m.Meta.Size || got.SHA256 != m.Meta.SHA256 {
		return m, scratch, damaged("%s: the metadata snapshot %s has %d bytes of SHA-256 %s, the manifest says %d bytes of %s",
			dir, m.Meta.File, got.Size, got.SHA256, m.Meta.Size, m.Meta.SHA256)
	}
	rdir := filepath.Join(dir, ResourcesDir)
	if _, err := os.Stat(rdir); err != nil {
		return m, scratch, damaged("%s: %v", dir, err)
	}
	res, err := fsstore.New(rdir, fsstore.Options{Shared: true})
	if err != nil {
		return m, scratch, damaged("%s: %v", dir, err)
	}
	defer res.Close()
	var total, done int64
	listed := make(map[resource.ID]int64, len(m.Resources))
	for _, r := range m.Resources {
		total += r.Size
		listed[r.ID] = r.Size
	}
	progress(PhaseCheck, 0, total)
	var bad []string
	for _, r := range m.Resources {
		info, err := resource.Check(ctx, res, r.ID)
		if ctx.Err() != nil {
			return m, scratch, ctx.Err()
		}
		switch {
		case errors.Is(err, resource.ErrNotFound):
			bad = append(bad, fmt.Sprintf("resource %s is missing", r.ID))
		case err != nil:
			bad = append(bad, fmt.Sprintf("resource %s: %v", r.ID, err))
		case info.Size != r.Size:
			bad = append(bad, fmt.Sprintf("resource %s has %d bytes, the manifest says %d", r.ID, info.Size, r.Size))
		}
		done += r.Size
		progress(PhaseCheck, done, total)
	}
	if len(bad) > 0 {
		more := ""
		if len(bad) > 5 {
			more, bad = fmt.Sprintf(" (and %d more)", len(bad)-5), bad[:5]
		}
		return m, scratch, damaged("%s: %s%s", dir, strings.Join(bad, "; "), more)
	}
	// The snapshot's own references, against the list.
	st, err := sqlite.Open(ctx, scratch)
	if err != nil {
		return m, scratch, damaged("%s: the metadata snapshot: %v", dir, err)
	}
	defer st.Close()
	err = st.View(ctx, func(r meta.Reader) error {
		ex, ok := r.(meta.Exporter)
		if !ok {
			return ErrUnsupported
		}
		refs, _, err := references(ctx, ex, 500)
		if err != nil {
			return err
		}
		for id, size := range refs {
			if s, ok := listed[id]; !ok || s != size {
				return damaged("%s: the snapshot references resource %s (%d bytes), which the manifest does not list", dir, id, size)
			}
		}
		return nil
	})
	return m, scratch, err
}

// references collects every resource the messages and uploads of the
// snapshot reference, with its size, and counts the messages.
func references(ctx context.Context, ex meta.Exporter, batch int) (map[resource.ID]int64, int, error) {
	refs := map[resource.ID]int64{}
	after := ""
	n := 0
	for {
		ms, err := ex.AllMessages(ctx, after, batch)
		if err != nil {
			return nil, 0, err
		}
		if len(ms) == 0 {
			break
		}
		for _, m := range ms {
			for _, ref := range m.Refs {
				refs[ref.ID] = ref.Size
			}
		}
		n += len(ms)
		after = ms[len(ms)-1].ID
	}
	ups, err := ex.Uploads(ctx)
	if err != nil {
		return nil, 0, err
	}
	for _, u := range ups {
		refs[u.Ref.ID] = u.Ref.Size
	}
	return refs, n, nil
}

// Opened is a backup opened as the source of a copy, once Check passed.
type Opened struct {
	Stores
	Manifest Manifest
	close    func() error
}

// Close closes the backup's stores and removes the scratch copy.
func (o *Opened) Close() error { return o.close() }

// Open checks the backup in dir whole (Check: a damaged or partial backup
// is refused with an ErrDamaged) and opens it as a source: a scratch copy
// of its snapshot, in opt.Scratch, and its resources. The backup itself is
// only read.
func Open(ctx context.Context, dir string, opt RestoreOptions) (*Opened, error) {
	m, scratch, err := check(ctx, dir, opt.Scratch, opt.Progress)
	if err != nil {
		if scratch != "" {
			removeDB(scratch)
		}
		return nil, err
	}
	st, err := sqlite.Open(ctx, scratch)
	if err != nil {
		removeDB(scratch)
		return nil, fmt.Errorf("backup: opening the snapshot: %w", err)
	}
	res, err := fsstore.New(filepath.Join(dir, ResourcesDir), fsstore.Options{Shared: true})
	if err != nil {
		st.Close()
		removeDB(scratch)
		return nil, fmt.Errorf("backup: opening %s: %w", dir, err)
	}
	return &Opened{Stores: Stores{Meta: st, Resources: res}, Manifest: m, close: func() error {
		err := errors.Join(st.Close(), res.Close())
		removeDB(scratch)
		return err
	}}, nil
}

// Restore copies the backup in dir into dst, then verifies it (every
// resource read back from dst and hashed). Before writing anything it
// checks the backup whole (Open): a damaged or partial backup is refused
// with an ErrDamaged and dst is left as it was. Restoring into stores that
// already hold another domain is the caller's to refuse (pullmail restore
// does); running it again after an interruption resumes it, as Copy does.
func Restore(ctx context.Context, dir string, dst Stores, opt RestoreOptions) (Summary, error) {
	src, err := Open(ctx, dir, opt)
	if err != nil {
		return Summary{}, err
	}
	defer src.Close()
	opt.Verify, opt.VerifyBytes = true, true
	return Copy(ctx, src.Stores, dst, opt.Options)
}
