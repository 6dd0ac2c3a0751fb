package fsstore

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/sealed"
	"github.com/pullmail/pullmail/resource/storetest"
)

// This package's stores are resource/blobstore (plain) and resource/sealed
// (encrypted) over its directory (Store.Bucket), which keep the file formats
// it wrote before those layers existed: testdata/ holds a directory of each
// mode written then (fsstore-*.txt: ID, storetest.Data seed, size).

// The formats' sizes, as the tests of the files (which this package now
// writes through resource/blobstore and resource/sealed) name them.
const (
	headerSize  = sealed.HeaderSize
	tagSize     = sealed.TagSize
	sealedChunk = sealed.SealedChunk
	chunkSize   = sealed.ChunkSize
	// The plain sidecar's header and sums (package doc), as
	// resource/blobstore writes them.
	sumsHeader = 4 + 4 + 4 + 8 + 43
	sumSize    = 32
)

var (
	plainSize = sealed.PlainSize
	numChunks = sealed.NumChunks
)

type testdataEntry struct {
	id   resource.ID
	data []byte
}

// openTestdata copies testdata/fsstore-NAME (it is written to: tmp/) and
// returns the store on the copy, its key and what it holds.
func openTestdata(t *testing.T, name string) (*Store, []testdataEntry) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "fsstore-"+name))); err != nil {
		t.Fatal(err)
	}
	var key []byte
	if name == "encrypted" {
		var err error
		if key, err = os.ReadFile(filepath.Join("testdata", "fsstore.key")); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(filepath.Join("testdata", "fsstore-"+name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var want []testdataEntry
	for sc := bufio.NewScanner(f); sc.Scan(); {
		fields := strings.Fields(sc.Text())
		seed, _ := strconv.Atoi(fields[1])
		n, _ := strconv.Atoi(fields[2])
		want = append(want, testdataEntry{resource.ID(fields[0]), storetest.Data(uint64(seed), n)})
	}
	if len(want) == 0 {
		t.Fatal("empty testdata list")
	}
	return newStore(t, dir, key), want
}

// TestReadsDirectoriesWrittenBefore reads and checks every resource of
// testdata/ and lists them all.
func TestReadsDirectoriesWrittenBefore(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s, want := openTestdata(t, m.name)
			for _, st := range []struct {
				name string
				s    resource.Store
			}{{"fsstore", s}} {
				var ids []resource.ID
				if err := st.s.Enumerate(t.Context(), func(i resource.Info) error {
					ids = append(ids, i.ID)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if len(ids) != len(want) {
					t.Errorf("%s: Enumerate lists %d resources, want %d", st.name, len(ids), len(want))
				}
				for _, w := range want {
					if !slices.Contains(ids, w.id) {
						t.Errorf("%s: Enumerate misses %s", st.name, w.id)
					}
					if got := readAll(t, st.s, w.id); !bytes.Equal(got, w.data) {
						t.Errorf("%s: %s reads %d bytes, not the %d stored", st.name, w.id, len(got), len(w.data))
					}
					if info, err := resource.Check(t.Context(), st.s, w.id); err != nil || info.Size != int64(len(w.data)) {
						t.Errorf("%s: Check(%s) = %+v, %v", st.name, w.id, info, err)
					}
				}
			}
		})
	}
}
