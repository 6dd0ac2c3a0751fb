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
	"github.com/pullmail/pullmail/resource/blobstore"
	"github.com/pullmail/pullmail/resource/sealed"
	"github.com/pullmail/pullmail/resource/storetest"
)

// The stores of resource/blobstore (plain) and resource/sealed (encrypted)
// over this package's directory (Store.Bucket) keep its file formats: they
// read the directories in testdata/, written by this package before those
// layers existed, and this package reads what they write.

// The encrypted format's sizes, as the tests of the encrypted files (which
// this package's encrypted store now writes through resource/sealed) name
// them.
const (
	headerSize  = sealed.HeaderSize
	tagSize     = sealed.TagSize
	sealedChunk = sealed.SealedChunk
)

var (
	plainSize = sealed.PlainSize
	numChunks = sealed.NumChunks
)

// layer is the store of a mode over s's directory.
func layer(t testing.TB, s *Store, key []byte) resource.Store {
	t.Helper()
	if key == nil {
		return blobstore.New(s.Bucket(), blobstore.Options{})
	}
	ls, err := sealed.New(s.Bucket(), key, sealed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

type testdataEntry struct {
	id   resource.ID
	data []byte
}

// openTestdata copies testdata/fsstore-NAME (it is written to: tmp/) and
// returns the store on the copy, its key and what it holds.
func openTestdata(t *testing.T, name string) (*Store, []byte, []testdataEntry) {
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
	return newStore(t, dir, key), key, want
}

func TestLayersReadTestdata(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s, key, want := openTestdata(t, m.name)
			for _, st := range []struct {
				name string
				s    resource.Store
			}{{"fsstore", s}, {"layer", layer(t, s, key)}} {
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

// TestLayersWriteFormat: what the layers write over the directory, this
// package reads and checks, and the other way round.
func TestLayersWriteFormat(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s := newStore(t, t.TempDir(), m.key)
			l := layer(t, s, m.key)
			for i, n := range storetest.Sizes {
				data := storetest.Data(uint64(800+i), n)
				for _, pair := range [][2]resource.Store{{l, s}, {s, l}} {
					info, err := pair[0].Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
					if err != nil {
						t.Fatal(err)
					}
					if got := readAll(t, pair[1], info.ID); !bytes.Equal(got, data) {
						t.Errorf("%d bytes written by %T read back as %d bytes by %T", n, pair[0], len(got), pair[1])
					}
					if _, err := resource.Check(t.Context(), pair[1], info.ID); err != nil {
						t.Errorf("%d bytes written by %T: Check by %T: %v", n, pair[0], pair[1], err)
					}
				}
			}
		})
	}
}

// TestLayersConformance runs the suite on the layers over a directory.
func TestLayersConformance(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			storetest.Test(t, func(t *testing.T) resource.Store {
				dir := t.TempDir()
				return corruptibleLayer{layer(t, newStore(t, dir, m.key), m.key), corruptible{dir: dir}, m.key}
			})
		})
	}
}

type corruptibleLayer struct {
	resource.Store
	c   corruptible
	key []byte
}

func (c corruptibleLayer) Corrupt(t *testing.T, id resource.ID, off int64) {
	if c.key != nil {
		off = sealed.StoredOffset(off)
	}
	corrupt(t, blobFile(c.c.dir, id), off)
}
