package fsstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/storetest"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func newStore(t testing.TB, dir string, key []byte) *Store {
	t.Helper()
	s, err := New(dir, Options{Key: key})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var modes = []struct {
	name string
	key  []byte
}{
	{"plain", nil},
	{"encrypted", testKey(1)},
}

func TestConformance(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			storetest.Test(t, func(t *testing.T) resource.Store {
				dir := t.TempDir()
				return corruptible{newStore(t, dir, m.key), dir}
			})
		})
	}
}

func TestPutRemoveRace(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			storetest.PutRemoveRace(t, func(t *testing.T) resource.Store { return newStore(t, t.TempDir(), m.key) })
		})
	}
}

// corruptible is a Store that can damage its own files, for the suite's
// damage cases (storetest.Corrupter).
type corruptible struct {
	*Store
	dir string
}

func (c corruptible) Corrupt(t *testing.T, id resource.ID, off int64) {
	if c.key != nil {
		off = headerSize + off/chunkSize*sealedChunk + off%chunkSize
	}
	corrupt(t, blobFile(c.dir, id), off)
}

// blobFile is the file of id in a store made in dir (format 2).
func blobFile(dir string, id resource.ID) string {
	return filepath.Join(dir, "blobs", string(id[:2]), string(id))
}

func TestLayout(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir, nil)
	data := []byte("layout")
	info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(blobFile(dir, info.ID))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob file: %q, %v", got, err)
	}
	format, err := os.ReadFile(filepath.Join(dir, "format"))
	if err != nil || string(format) != "pullmail-fsstore 2 plain\n" {
		t.Errorf("format file: %q, %v", format, err)
	}
	if ents, err := os.ReadDir(filepath.Join(dir, "tmp")); err != nil || len(ents) != 0 {
		t.Errorf("tmp/ after Put: %v, %v", ents, err)
	}
}

// TestLayoutVersion1 opens a store made before format 2: it keeps its two
// levels of directories, old blobs and new.
func TestLayoutVersion1(t *testing.T) {
	dir := t.TempDir()
	old := []byte("stored by format 1")
	oldID := resource.IDOf(old)
	v1 := func(id resource.ID) string {
		return filepath.Join(dir, "blobs", string(id[:2]), string(id[2:4]), string(id))
	}
	if err := os.MkdirAll(filepath.Dir(v1(oldID)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(v1(oldID), old, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "format"), []byte("pullmail-fsstore 1 plain\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, dir, nil)
	if got := readAll(t, s, oldID); !bytes.Equal(got, old) {
		t.Errorf("old blob reads %q", got)
	}
	info, err := s.Put(t.Context(), bytes.NewReader([]byte("new")), resource.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(v1(info.ID)); err != nil {
		t.Errorf("a new blob of a format 1 store is not in its two-level place: %v", err)
	}
	var ids []resource.ID
	if err := s.Enumerate(t.Context(), func(i resource.Info) error { ids = append(ids, i.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 {
		t.Errorf("Enumerate found %v, want both blobs", ids)
	}
	if format, _ := os.ReadFile(filepath.Join(dir, "format")); string(format) != "pullmail-fsstore 1 plain\n" {
		t.Errorf("format file became %q", format)
	}
	// A key given to a plain format 1 store is refused as for format 2.
	if _, err := New(dir, Options{Key: make([]byte, KeySize)}); err == nil || !strings.Contains(err.Error(), "not encrypted") {
		t.Errorf("New with a key on a plain format 1 store: %v", err)
	}
}

func TestNewRemovesTmp(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(t, dir, m.key)
			s.Close()
			// What a kill -9 mid-upload leaves: a partial temp file (and,
			// for good measure, a directory).
			tmp := filepath.Join(dir, "tmp")
			if err := os.WriteFile(filepath.Join(tmp, "PARTIAL"), []byte("half an upload"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(tmp, "d", "e"), 0o700); err != nil {
				t.Fatal(err)
			}
			s = newStore(t, dir, m.key)
			if ents, err := os.ReadDir(tmp); err != nil || len(ents) != 0 {
				t.Errorf("tmp/ after New: %v, %v", ents, err)
			}
			n := 0
			if err := s.Enumerate(t.Context(), func(resource.Info) error { n++; return nil }); err != nil || n != 0 {
				t.Errorf("Enumerate after recovery: %d, %v", n, err)
			}
		})
	}
}

// TestInterruptedUpload stops an upload half-way, as a crash would, and
// checks that nothing is visible and that the next New cleans up.
func TestInterruptedUpload(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir, testKey(2))
	pr, pw := io.Pipe()
	done := make(chan error)
	go func() {
		_, err := s.Put(t.Context(), pr, resource.PutOptions{Size: -1})
		done <- err
	}()
	data := storetest.Data(1, 3*chunkSize)
	if _, err := pw.Write(data[:2*chunkSize]); err != nil {
		t.Fatal(err)
	}
	// The upload is in progress: it is in tmp/ and nowhere else.
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 1 {
		t.Errorf("tmp/ during an upload holds %d entries, want 1", len(ents))
	}
	if _, err := s.Stat(t.Context(), resource.IDOf(data)); !errors.Is(err, resource.ErrNotFound) {
		t.Errorf("Stat during the upload: %v", err)
	}
	// A restart while the upload hangs removes it.
	s2 := newStore(t, dir, testKey(2))
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ after restart holds %d entries", len(ents))
	}
	pw.CloseWithError(errors.New("client went away"))
	if err := <-done; err == nil {
		t.Error("interrupted Put succeeded")
	}
	n := 0
	s2.Enumerate(t.Context(), func(resource.Info) error { n++; return nil })
	if n != 0 {
		t.Errorf("Enumerate after an interrupted upload: %d resources", n)
	}
}

func TestPutTouchesExisting(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(t, dir, m.key)
			data := []byte("touch me")
			info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
			if err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-48 * time.Hour)
			if err := os.Chtimes(blobFile(dir, info.ID), old, old); err != nil {
				t.Fatal(err)
			}
			if st, _ := s.Stat(t.Context(), info.ID); !st.Created.Equal(old) {
				t.Fatalf("Created = %v, want %v (the mtime)", st.Created, old)
			}
			again, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
			if err != nil {
				t.Fatal(err)
			}
			if !again.Created.After(old.Add(24 * time.Hour)) {
				t.Errorf("Created after a second Put = %v, still the old %v", again.Created, old)
			}
		})
	}
}

func corrupt(t *testing.T, file string, off int64) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptionPlain(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir, nil)
	data := storetest.Data(2, 3*chunkSize+9)
	size := int64(len(data))
	info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	corrupt(t, blobFile(dir, info.ID), chunkSize+5)

	tests := []struct {
		name string
		read func(resource.Object) (int64, error)
	}{
		{"ReadAll", func(o resource.Object) (int64, error) {
			b, err := io.ReadAll(o)
			return int64(len(b)), err
		}},
		{"CopyN as http.ServeContent", func(o resource.Object) (int64, error) {
			if _, err := o.Seek(0, io.SeekEnd); err != nil {
				return 0, err
			}
			if _, err := o.Seek(0, io.SeekStart); err != nil {
				return 0, err
			}
			return io.CopyN(io.Discard, o, size)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := s.Open(t.Context(), info.ID)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			n, err := tt.read(o)
			if !errors.Is(err, resource.ErrDamaged) {
				t.Fatalf("reading a damaged blob: %v, want ErrDamaged", err)
			}
			if n != chunkSize {
				t.Errorf("%d bytes were delivered before the error, want the %d of the intact chunk 0", n, chunkSize)
			}
			// The damaged chunk fails again however it is reached.
			if _, err := o.Seek(chunkSize+5, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			if k, err := o.Read(make([]byte, 10)); !errors.Is(err, resource.ErrDamaged) || k != 0 {
				t.Errorf("Read of the damaged chunk again = %d, %v; want 0, ErrDamaged", k, err)
			}
		})
	}
	// A Range read of the intact part still works.
	o, err := s.Open(t.Context(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if _, err := o.Seek(2*chunkSize, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(o); err != nil || !bytes.Equal(b, data[2*chunkSize:]) {
		t.Errorf("Range read of an undamaged part: %d bytes, %v", len(b), err)
	}
	if got := s.DamageCount(); got != 1 {
		t.Errorf("DamageCount = %d, want 1 (one resource, however often read)", got)
	}
}

func TestCorruptionEncrypted(t *testing.T) {
	data := storetest.Data(3, 3*chunkSize+9)
	tests := []struct {
		name    string
		damage  func(t *testing.T, file string)
		openErr bool // Open fails; else reading chunk 1 fails
	}{
		{"chunk byte", func(t *testing.T, f string) { corrupt(t, f, headerSize+sealedChunk+100) }, false},
		{"chunk tag", func(t *testing.T, f string) { corrupt(t, f, headerSize+2*sealedChunk-1) }, false},
		{"header tag", func(t *testing.T, f string) { corrupt(t, f, 50) }, true},
		{"salt", func(t *testing.T, f string) { corrupt(t, f, 9) }, true},
		{"nonce prefix", func(t *testing.T, f string) { corrupt(t, f, 41) }, true},
		{"magic", func(t *testing.T, f string) { corrupt(t, f, 0) }, true},
		{"cut one chunk", func(t *testing.T, f string) { truncate(t, f, headerSize+3*sealedChunk) }, true},
		{"cut one byte", func(t *testing.T, f string) { truncate(t, f, fileSize(t, f)-1) }, true},
		{"grown by a chunk", func(t *testing.T, f string) { truncate(t, f, fileSize(t, f)+sealedChunk) }, true},
		{"header only", func(t *testing.T, f string) { truncate(t, f, headerSize) }, true},
		{"empty", func(t *testing.T, f string) { truncate(t, f, 0) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(t, dir, testKey(3))
			info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
			if err != nil {
				t.Fatal(err)
			}
			tt.damage(t, blobFile(dir, info.ID))
			o, err := s.Open(t.Context(), info.ID)
			if tt.openErr {
				if err == nil {
					o.Close()
					t.Fatal("Open of a damaged file succeeded")
				}
				if !errors.Is(err, resource.ErrDamaged) {
					t.Errorf("Open of a damaged file: %v, want ErrDamaged", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer o.Close()
			// Chunk 0 is intact, chunk 1 is not.
			b := make([]byte, chunkSize)
			if _, err := io.ReadFull(o, b); err != nil || !bytes.Equal(b, data[:chunkSize]) {
				t.Errorf("reading the intact chunk: %v", err)
			}
			if n, err := o.Read(b); !errors.Is(err, resource.ErrDamaged) || n != 0 {
				t.Errorf("reading the damaged chunk = %d, %v; want 0, ErrDamaged", n, err)
			}
			if _, err := o.Seek(2*chunkSize, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			if rest, err := io.ReadAll(o); err != nil || !bytes.Equal(rest, data[2*chunkSize:]) {
				t.Errorf("Range read past the damage: %v", err)
			}
		})
	}
}

func truncate(t *testing.T, file string, size int64) {
	t.Helper()
	if err := os.Truncate(file, size); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, file string) int64 {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestSwapEncrypted moves one resource's file under another's name: the ID in
// the header tag stops it.
func TestSwapEncrypted(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir, testKey(4))
	a, err := s.Put(t.Context(), bytes.NewReader([]byte("aaaa")), resource.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Put(t.Context(), bytes.NewReader([]byte("bbbb")), resource.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(blobFile(dir, a.ID), blobFile(dir, b.ID)); err != nil {
		t.Fatal(err)
	}
	if o, err := s.Open(t.Context(), b.ID); !errors.Is(err, resource.ErrDamaged) {
		t.Errorf("Open of a swapped file: %v, want ErrDamaged", err)
		if err == nil {
			o.Close()
		}
	}
}

func TestWrongKey(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir, testKey(5))
	data := storetest.Data(5, chunkSize+1)
	info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	for _, key := range [][]byte{testKey(6), nil} {
		if _, err := New(dir, Options{Key: key}); err == nil {
			t.Errorf("New with key %x on a store encrypted with another succeeded", key)
		}
	}
	plainDir := t.TempDir()
	newStore(t, plainDir, nil).Close()
	if _, err := New(plainDir, Options{Key: testKey(5)}); err == nil {
		t.Error("New with a key on a plain store succeeded")
	}
	if _, err := New(t.TempDir(), Options{Key: make([]byte, 16)}); err == nil {
		t.Error("New with a 16-byte key succeeded")
	}

	// The file itself, read with another key, fails cleanly.
	other := t.TempDir()
	s2 := newStore(t, other, testKey(6))
	src, err := os.ReadFile(blobFile(dir, info.ID))
	if err != nil {
		t.Fatal(err)
	}
	dst := blobFile(other, info.ID)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, src, 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := s2.Stat(t.Context(), info.ID); err != nil || st.Size != int64(len(data)) {
		t.Errorf("Stat with another key = %+v, %v (the size needs no key)", st, err)
	}
	o, err := s2.Open(t.Context(), info.ID)
	if !errors.Is(err, resource.ErrDamaged) {
		t.Errorf("Open with another key: %v, want ErrDamaged", err)
	}
	if o != nil {
		o.Close()
	}
	// And the right key still reads it.
	s = newStore(t, dir, testKey(5))
	o, err = s.Open(t.Context(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if b, err := io.ReadAll(o); err != nil || !bytes.Equal(b, data) {
		t.Errorf("reading with the right key: %v", err)
	}
}

func TestEncryptedFormat(t *testing.T) {
	marker := bytes.Repeat([]byte("PLAINTEXT MARKER "), 1000)
	for _, n := range storetest.Sizes {
		dir := t.TempDir()
		s := newStore(t, dir, testKey(7))
		data := append(storetest.Data(7, n), marker...)[:n]
		info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(blobFile(dir, info.ID))
		if err != nil {
			t.Fatal(err)
		}
		chunks := max(1, (n+chunkSize-1)/chunkSize)
		if want := headerSize + n + chunks*tagSize; len(raw) != want {
			t.Errorf("%d plain bytes: file of %d bytes, want %d", n, len(raw), want)
		}
		if !bytes.Equal(raw[:8], []byte("PMRE\x01\x00\x00\x00")) {
			t.Errorf("header starts %q", raw[:8])
		}
		if n >= 64 && bytes.Contains(raw, data[n-64:]) {
			t.Errorf("%d plain bytes: the plaintext is in the file", n)
		}
	}
	// Identical plaintexts make different files (fresh salt each time).
	a, b := t.TempDir(), t.TempDir()
	sa, sb := newStore(t, a, testKey(7)), newStore(t, b, testKey(7))
	ia, _ := sa.Put(t.Context(), bytes.NewReader(marker), resource.PutOptions{Size: -1})
	sb.Put(t.Context(), bytes.NewReader(marker), resource.PutOptions{Size: -1})
	fa, _ := os.ReadFile(blobFile(a, ia.ID))
	fb, _ := os.ReadFile(blobFile(b, ia.ID))
	if len(fa) == 0 || bytes.Equal(fa[8:], fb[8:]) {
		t.Error("two encryptions of the same bytes are identical")
	}
}

func TestPlainSize(t *testing.T) {
	tests := []struct {
		file int64
		want int64 // -1: invalid
	}{
		{0, -1},
		{headerSize, -1},
		{headerSize + tagSize - 1, -1},
		{headerSize + tagSize, 0},
		{headerSize + tagSize + 1, 1},
		{headerSize + sealedChunk, chunkSize},
		{headerSize + sealedChunk + 1, -1},
		{headerSize + sealedChunk + tagSize, -1}, // an empty last chunk after a full one
		{headerSize + sealedChunk + tagSize + 1, chunkSize + 1},
		{headerSize + 2*sealedChunk, 2 * chunkSize},
	}
	for _, tt := range tests {
		got, err := plainSize(tt.file)
		if tt.want < 0 {
			if err == nil {
				t.Errorf("plainSize(%d) = %d, want an error", tt.file, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("plainSize(%d) = %d, %v; want %d", tt.file, got, err, tt.want)
		}
	}
}

// TestPathSafety plants symbolic links where blobs should be: the os.Root
// refuses to follow them out of the store.
func TestPathSafety(t *testing.T) {
	outside := t.TempDir()
	secret := []byte("outside the store")
	if err := os.WriteFile(filepath.Join(outside, "secret"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := newStore(t, dir, nil)
	id := resource.IDOf(secret)
	f := blobFile(dir, id)
	if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), f); err != nil {
		t.Fatal(err)
	}
	if o, err := s.Open(t.Context(), id); err == nil {
		b, _ := io.ReadAll(o)
		o.Close()
		t.Errorf("Open followed a symlink out of the store and read %q", b)
	}
	// A directory symlink higher up.
	id2 := resource.IDOf([]byte("other"))
	d2 := filepath.Join(dir, "blobs", string(id2[:2]))
	os.RemoveAll(d2)
	if err := os.Symlink(outside, d2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(t.Context(), bytes.NewReader([]byte("other")), resource.PutOptions{Size: -1}); err == nil {
		t.Error("Put wrote through a symlink out of the store")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Errorf("the outside directory holds %d entries, want only the secret", len(ents))
	}
	if err := s.Remove(t.Context(), id); err != nil {
		t.Logf("Remove of the planted link: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "secret")); err != nil {
		t.Errorf("the outside file is gone: %v", err)
	}
}

func TestEnumerateSkipsJunk(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir, nil)
	info, err := s.Put(t.Context(), bytes.NewReader([]byte("real")), resource.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	other := resource.IDOf([]byte("misplaced"))
	junk := []string{
		"blobs/junk",
		"blobs/" + string(other),
		"blobs/zz/" + string(other),
		"blobs/" + string(other[:2]) + "/" + string(other[2:4]) + "/" + string(other), // format 1's place
		"blobs/" + string(info.ID[:2]) + "/not-an-id",
		"blobs/" + string(info.ID[:2]) + "/" + string(info.ID) + ".tmp",
		"blobs/" + string(other[:2]) + "/deeper/" + string(other),
		"tmp/" + string(other),
	}
	for _, j := range junk {
		p := filepath.Join(dir, filepath.FromSlash(j))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("misplaced"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var got []resource.ID
	if err := s.Enumerate(t.Context(), func(i resource.Info) error { got = append(got, i.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != info.ID {
		t.Errorf("Enumerate = %v, want only %s", got, info.ID)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resource.key")
	key, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != KeySize || fi.Size() != KeySize || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %d bytes, mode %v; key %d bytes", fi.Size(), fi.Mode().Perm(), len(key))
	}
	if bytes.Equal(key, make([]byte, KeySize)) {
		t.Error("the key is all zeros")
	}
	again, err := LoadOrCreateKey(path)
	if err != nil || !bytes.Equal(again, key) {
		t.Errorf("second LoadOrCreateKey = %x, %v; want the same key", again, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("key directory holds %d entries, want 1", len(ents))
	}

	// Created by many at once: one key for all.
	path2 := filepath.Join(dir, "race.key")
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := LoadOrCreateKey(path2)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys {
		if !bytes.Equal(k, keys[0]) {
			t.Fatal("concurrent LoadOrCreateKey returned different keys")
		}
	}

	bad := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"short", make([]byte, 16), 0o600},
		{"long", make([]byte, 33), 0o600},
		{"empty", nil, 0o600},
		{"world readable", make([]byte, 32), 0o644},
		{"group readable", make([]byte, 32), 0o640},
	}
	for _, b := range bad {
		p := filepath.Join(dir, b.name)
		if err := os.WriteFile(p, b.data, b.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, b.mode); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateKey(p); err == nil {
			t.Errorf("%s key file accepted", b.name)
		}
	}
	if _, err := LoadOrCreateKey(filepath.Join(dir, "no", "such", "dir", "key")); err == nil {
		t.Error("LoadOrCreateKey in a missing directory succeeded")
	}
}

func readAll(t *testing.T, s resource.Fetcher, id resource.ID) []byte {
	t.Helper()
	o, err := s.Open(t.Context(), id)
	if err != nil {
		t.Fatalf("Open %s: %v", id, err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return b
}

// TestSidecar pins the on-disk format of a plain blob's chunk sums (package
// doc): a header naming the blob, then the SHA-256 of each 64 KiB chunk; a
// blob of one chunk at most has none (its sum is its ID).
func TestSidecar(t *testing.T) {
	for _, n := range storetest.Sizes {
		dir := t.TempDir()
		s := newStore(t, dir, nil)
		data := storetest.Data(8, n)
		info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(blobFile(dir, info.ID) + ".sums")
		if n <= chunkSize {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%d bytes: a sidecar (%v), want none", n, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		want := []byte("PMCS\x01\x00\x00\x00\x00\x01\x00\x00")
		want = binary.BigEndian.AppendUint64(want, uint64(n))
		want = append(want, info.ID...)
		for off := 0; off < n; off += chunkSize {
			sum := sha256.Sum256(data[off:min(off+chunkSize, n)])
			want = append(want, sum[:]...)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%d bytes: sidecar\n%x\nwant\n%x", n, got, want)
		}
	}
}

// TestSidecarRebuilt covers blobs whose sidecar is missing (stored before
// sidecars) or damaged: the blob is checked whole against its ID, gets a
// new sidecar, and reads; it is not counted as damaged. A blob without a
// sidecar whose bytes are damaged fails to open with ErrDamaged.
func TestSidecarRebuilt(t *testing.T) {
	data := storetest.Data(9, 2*chunkSize+5)
	tests := []struct {
		name    string
		damage  func(t *testing.T, blob string)
		damaged bool
	}{
		{"missing", func(t *testing.T, blob string) { os.Remove(blob + ".sums") }, false},
		{"sum of chunk 1", func(t *testing.T, blob string) { corrupt(t, blob+".sums", sumsHeader+sumSize+3) }, false},
		{"header", func(t *testing.T, blob string) { corrupt(t, blob+".sums", 30) }, false},
		{"cut", func(t *testing.T, blob string) { truncate(t, blob+".sums", sumsHeader+sumSize) }, false},
		{"missing, blob damaged", func(t *testing.T, blob string) {
			os.Remove(blob + ".sums")
			corrupt(t, blob, chunkSize)
		}, true},
		{"blob cut", func(t *testing.T, blob string) { truncate(t, blob, chunkSize) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(t, dir, nil)
			info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
			if err != nil {
				t.Fatal(err)
			}
			blob := blobFile(dir, info.ID)
			good, _ := os.ReadFile(blob + ".sums")
			tt.damage(t, blob)
			_, err = resource.Check(t.Context(), s, info.ID)
			if tt.damaged {
				if !errors.Is(err, resource.ErrDamaged) || s.DamageCount() != 1 {
					t.Errorf("Check = %v, DamageCount %d; want ErrDamaged, 1", err, s.DamageCount())
				}
				return
			}
			if err != nil || s.DamageCount() != 0 {
				t.Fatalf("Check = %v, DamageCount %d; want nil, 0", err, s.DamageCount())
			}
			if got, _ := os.ReadFile(blob + ".sums"); !bytes.Equal(got, good) {
				t.Error("the sidecar was not rebuilt")
			}
		})
	}
}

// TestShared opens a directory another process uses: its uploads in
// progress in tmp/ stay.
func TestShared(t *testing.T) {
	dir := t.TempDir()
	newStore(t, dir, nil).Close()
	busy := filepath.Join(dir, "tmp", "upload-in-progress")
	if err := os.WriteFile(busy, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(dir, Options{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(busy); err != nil {
		t.Errorf("New with Shared removed an upload in progress: %v", err)
	}
}

// TestOnDamage: the callback (the server's metric) hears of each damaged
// resource once until it is repaired.
func TestOnDamage(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var heard []resource.ID
	s, err := New(dir, Options{OnDamage: func(id resource.ID) { mu.Lock(); heard = append(heard, id); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := storetest.Data(10, chunkSize+1)
	info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	corrupt(t, blobFile(dir, info.ID), 3)
	for range 3 {
		resource.Check(t.Context(), s, info.ID)
	}
	if _, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	corrupt(t, blobFile(dir, info.ID), 3)
	resource.Check(t.Context(), s, info.ID)
	if len(heard) != 2 || s.DamageCount() != 2 {
		t.Errorf("OnDamage heard %v, DamageCount %d; want the resource twice (damaged, repaired, damaged)", heard, s.DamageCount())
	}
}
