package atomicfile

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "k.json")
	if err := Create(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", err, st)
	}
	if err := Create(path, []byte("second"), 0o600); !IsExist(err) {
		t.Fatalf("overwrote an existing file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "first" {
		t.Fatalf("content %q", b)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

// TestReplace: Replace writes a new file and replaces an old one, with
// the mode asked for and no temporary file left.
func TestReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	for _, want := range []string{"first", "second"} {
		if err := Replace(path, []byte(want), 0o640); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); string(b) != want {
			t.Fatalf("content %q, want %q", b, want)
		}
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("mode: %v %v", err, st)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

// TestCreateRace: of many concurrent creators exactly one wins.
func TestCreateRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	var wg sync.WaitGroup
	wins := make(chan string, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := Create(path, []byte{byte('a' + i)}, 0o600); err == nil {
				wins <- string(rune('a' + i))
			} else if !IsExist(err) {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	close(wins)
	var won []string
	for w := range wins {
		won = append(won, w)
	}
	b, _ := os.ReadFile(path)
	if len(won) != 1 || string(b) != won[0] {
		t.Fatalf("winners %v, file %q", won, b)
	}
}
