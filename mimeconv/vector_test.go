package mimeconv

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/pullmail/pullmail/resource/memstore"
)

// TestVector: docs/PROTOCOL.md §13.6. testdata/vector/message.eml converts
// to exactly placeholder.json and record.json; PULLMAIL_WRITE_VECTORS=1
// rewrites them (review the diff: it is the wire format).
func TestVector(t *testing.T) {
	dir := filepath.Join("testdata", "vector")
	msg := read(t, "vector/message.eml")
	res := roundTrip(t, memstore.New(), msg)
	rec, err := json.MarshalIndent(res.Record, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	ph := res.Message.Canonical()
	files := map[string][]byte{"record.json": append(rec, '\n'), "placeholder.json": append(ph, '\n')}
	for name, got := range files {
		path := filepath.Join(dir, name)
		if os.Getenv("PULLMAIL_WRITE_VECTORS") == "1" {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the vector:\n got %s\nwant %s", name, got, want)
		}
	}
}
