package upload_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/upload"
	"github.com/pullmail/pullmail/upload/stagingtest"
)

func TestFS(t *testing.T) {
	stagingtest.Test(t, func(t *testing.T) func() upload.Staging {
		dir := t.TempDir()
		return func() upload.Staging {
			s, err := upload.NewFS(dir)
			if err != nil {
				t.Fatal(err)
			}
			s.CheckpointBytes = 100000 // several checkpoints per Append
			return s
		}
	})
}

// TestFSCrash simulates kills at the points between Append's steps: bytes
// written past the sidecar's offset (a kill before the sidecar was
// replaced), a stale temporary sidecar, an orphan data file. None may
// change what the session yields.
func TestFSCrash(t *testing.T) {
	dir := t.TempDir()
	s, err := upload.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	data := stagingtest.Data(9, 50000)
	now := time.Now()
	sess := upload.Session{ID: upload.NewID(), Size: int64(len(data)), Created: now, Expires: now.Add(time.Hour)}
	if err := s.Create(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, sess.ID, 0, bytes.NewReader(data[:20000])); err != nil {
		t.Fatal(err)
	}
	// A kill after writing bytes but before the sidecar counted them: the
	// data file holds garbage past offset 20000.
	f, err := os.OpenFile(filepath.Join(dir, sess.ID+".data"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Repeat([]byte("garbage"), 1000))
	f.Close()
	// A kill between the temporary sidecar and its rename.
	os.WriteFile(filepath.Join(dir, "."+sess.ID+".json.123"), []byte(`{"id":`), 0o600)
	// A kill during Create, after the data file and before the sidecar.
	orphan := upload.NewID()
	os.WriteFile(filepath.Join(dir, orphan+".data"), []byte("half"), 0o600)

	s, err = upload.NewFS(dir) // restart
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, sess.ID)
	if err != nil || got.Offset != 20000 {
		t.Fatalf("after the crash: %+v, %v; want offset 20000", got, err)
	}
	if _, err := s.Get(ctx, orphan); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("orphan data file: Get = %v, want ErrNotFound", err)
	}
	last, err := s.Append(ctx, sess.ID, 20000, bytes.NewReader(data[20000:]))
	if err != nil || last.Digest != resource.IDOf(data) {
		t.Fatalf("resume after the crash = %+v, %v", last, err)
	}
	rc, err := s.Open(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(rc)
	rc.Close()
	if !bytes.Equal(buf.Bytes(), data) {
		t.Error("staged bytes differ after the crash")
	}
	// Expire with a time after the leftovers' mtime removes them but not
	// the live session.
	if _, err := s.Expire(ctx, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, orphan+".data")); !errors.Is(err, os.ErrNotExist) {
		t.Error("orphan data file not removed by Expire")
	}
	if _, err := os.Stat(filepath.Join(dir, "."+sess.ID+".json.123")); !errors.Is(err, os.ErrNotExist) {
		t.Error("temporary sidecar not removed by Expire")
	}
	if _, err := s.Get(ctx, sess.ID); err != nil {
		t.Errorf("live session after Expire: %v", err)
	}
}

// TestFSCorruptSidecar checks that a damaged sidecar is an error, never a
// session with made-up values.
func TestFSCorruptSidecar(t *testing.T) {
	dir := t.TempDir()
	s, _ := upload.NewFS(dir)
	id := upload.NewID()
	for _, body := range []string{`{`, `{"id":"` + id + `","size":5,"offset":9,"sha256_state":"AA=="}`, `{"id":"` + id + `","size":5,"offset":1}`} {
		os.WriteFile(filepath.Join(dir, id+".json"), []byte(body), 0o600)
		if got, err := s.Get(t.Context(), id); err == nil || errors.Is(err, upload.ErrNotFound) {
			t.Errorf("sidecar %s: Get = %+v, %v; want a corruption error", body, got, err)
		}
	}
}

func TestParseOffset(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"42", 42, true}, {"007", 7, true}, {"999999999999999999", 999999999999999999, true},
		{"", 0, false}, {"-1", 0, false}, {"+1", 0, false}, {" 1", 0, false}, {"1 ", 0, false}, {"1.0", 0, false},
		{"0x10", 0, false}, {"1000000000000000000", 0, false}, {"١", 0, false},
	} {
		got, err := upload.ParseOffset(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseOffset(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseOffset(f *testing.F) {
	for _, s := range []string{"0", "123", "-1", "+5", "99999999999999999999", " 7", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := upload.ParseOffset(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseOffset(%q) = %d < 0", s, n)
		}
		// Accepted values are exactly decimal digits: they round-trip
		// modulo leading zeros.
		if back, err := strconv.ParseInt(s, 10, 64); err != nil || back != n || s[0] == '+' || s[0] == '-' {
			t.Fatalf("ParseOffset(%q) = %d, strconv says %d, %v", s, n, back, err)
		}
	})
}

func FuzzValidID(f *testing.F) {
	f.Add(upload.NewID())
	f.Add("../uaaaaaaaaaaaaaaaaaaaaaaa")
	f.Add("uAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		if !upload.ValidID(s) {
			return
		}
		if len(s) != 25 || filepath.Base(s) != s || s[0] != 'u' {
			t.Fatalf("ValidID accepts %q", s)
		}
		for _, c := range s {
			if c == '.' || c == '/' || c == '\\' || c >= 0x80 {
				t.Fatalf("ValidID accepts %q", s)
			}
		}
	})
}

// FuzzSidecar feeds arbitrary bytes as a session's sidecar: Get must fail
// or return a session within its invariants, never panic.
func FuzzSidecar(f *testing.F) {
	id := "uaaaaaaaaaaaaaaaaaaaaaaaa"
	good, _ := json.Marshal(map[string]any{"id": id, "size": 10, "offset": 0,
		"sha256_state": []byte("sha\x03" + string(make([]byte, 32+64+8)))})
	f.Add(good)
	f.Add([]byte(`{"id":"` + id + `","size":3,"offset":3,"content_id":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"}`))
	f.Add([]byte(`{}`))
	dir := f.TempDir()
	s, err := upload.NewFS(dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, id+".json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(t.Context(), id)
		if err != nil {
			return
		}
		if got.ID != id || got.Size < 0 || got.Offset < 0 || got.Offset > got.Size {
			t.Fatalf("Get accepted an impossible session %+v", got)
		}
	})
}
