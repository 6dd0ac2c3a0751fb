package fsstore

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/storetest"
)

// TestNodesKeepEachOthersUploads: two nodes share one store directory. A
// node starting up (again) clears its own interrupted uploads, and the
// files a run without a node left directly in tmp/, but not the upload in
// progress of the other node, which completes.
func TestNodesKeepEachOthersUploads(t *testing.T) {
	dir := t.TempDir()
	open := func(node string) *Store {
		t.Helper()
		s, err := New(dir, Options{Key: testKey(3), Node: node})
		if err != nil {
			t.Fatalf("New(node %s): %v", node, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	n1 := open("n1")
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	data := storetest.Data(4, 3*chunkSize)
	go func() {
		_, err := n1.Put(t.Context(), pr, resource.PutOptions{Size: int64(len(data))})
		done <- err
	}()
	if _, err := pw.Write(data[:chunkSize]); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp", "n1")); len(ents) != 1 {
		t.Fatalf("tmp/n1/ during n1's upload holds %d entries, want 1", len(ents))
	}
	// Leftovers: a crashed run of n2, and of a run without a node name.
	for _, f := range []string{filepath.Join("tmp", "n2", "CRASHED"), filepath.Join("tmp", "OLD")} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	n2 := open("n2")
	for _, f := range []string{filepath.Join("tmp", "n2", "CRASHED"), filepath.Join("tmp", "OLD")} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after n2 started: %v, want removed", f, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp", "n1")); len(ents) != 1 {
		t.Fatalf("n2's start left %d entries of n1's upload, want 1", len(ents))
	}
	if _, err := pw.Write(data[chunkSize:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("n1's upload, across n2's start: %v", err)
	}
	rc, err := n2.Open(t.Context(), resource.IDOf(data))
	if err != nil {
		t.Fatalf("n2 opening n1's resource: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("n2 read %d bytes of n1's resource, %v", len(got), err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp", "n1")); len(ents) != 0 {
		t.Errorf("tmp/n1/ after the commit holds %d entries", len(ents))
	}

	for _, bad := range []string{".", "..", "a/b", ".hidden", "sp ace", string(make([]byte, 65))} {
		if _, err := New(dir, Options{Key: testKey(3), Node: bad}); err == nil {
			t.Errorf("New with node %q accepted", bad)
		}
	}
}
