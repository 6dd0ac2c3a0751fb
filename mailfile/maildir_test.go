package mailfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSplitName(t *testing.T) {
	for _, tc := range []struct {
		name, unique string
		flags        Flags
	}{
		{"1700.M1P1.host", "1700.M1P1.host", Flags{}},
		{"1700.M1P1.host:2,", "1700.M1P1.host", Flags{}},
		{"1700.M1P1.host:2,DFPRST", "1700.M1P1.host", Flags{Draft: true, Flagged: true, Passed: true, Replied: true, Seen: true, Trashed: true}},
		{"1700.M1P1.host:2,Sa", "1700.M1P1.host", Flags{Seen: true}},
		{"1700.M1P1.host:1,S", "1700.M1P1.host", Flags{}},
		{"a:b:2,T", "a:b", Flags{Trashed: true}},
	} {
		u, f := SplitName(tc.name)
		if u != tc.unique || f != tc.flags {
			t.Errorf("%q: %q %+v, want %q %+v", tc.name, u, f, tc.unique, tc.flags)
		}
	}
	if s := (Flags{Seen: true, Draft: true, Trashed: true}).String(); s != "DST" {
		t.Errorf("String: %q, want DST (ASCII order)", s)
	}
}

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		status, xstatus string
		want            Flags
	}{
		{"RO", "", Flags{Seen: true}},
		{"O", "", Flags{}},
		{"", "AFTD", Flags{Replied: true, Flagged: true, Draft: true, Trashed: true}},
		{"R", "F", Flags{Seen: true, Flagged: true}},
	} {
		if got := ParseStatus(tc.status, tc.xstatus); got != tc.want {
			t.Errorf("%q %q: %+v, want %+v", tc.status, tc.xstatus, got, tc.want)
		}
	}
}

// TestReadMaildir reads testdata/Maildir: new/ and cur/, in name order,
// with the flags of the names in cur/, tmp/ and dot files left out.
func TestReadMaildir(t *testing.T) {
	got, err := ReadMaildir("testdata/Maildir")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		sub   string
		flags Flags
	}{{"new", Flags{}}, {"cur", Flags{Replied: true, Seen: true}}, {"cur", Flags{Flagged: true, Trashed: true}}, {"cur", Flags{Draft: true}}}
	if len(got) != len(want) {
		t.Fatalf("%d entries %+v, want %d", len(got), got, len(want))
	}
	for i, e := range got {
		if e.Sub != want[i].sub || e.Flags != want[i].flags {
			t.Errorf("%d: %+v, want %+v", i, e, want[i])
		}
	}
	if _, err := ReadMaildir("testdata"); err == nil {
		t.Error("testdata (no cur/, new/) read as a Maildir")
	}
}

// TestMaildirWriter: delivered messages are in cur/ with their flags, in
// order, complete, and nothing is left in tmp/.
func TestMaildirWriter(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	w, err := NewMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []string{"Subject: 1\n\none\n", "Subject: 2\r\n\r\ntwo", ""}
	flags := []Flags{{Seen: true}, {}, {Trashed: true, Draft: true}}
	base := time.Unix(1700000000, 0)
	for i, m := range msgs {
		if _, err := w.Deliver(strings.NewReader(m), flags[i], base.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.SyncDirs(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("%d messages, want %d", len(got), len(msgs))
	}
	for i, e := range got {
		b, err := os.ReadFile(e.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, []byte(msgs[i])) || e.Flags != flags[i] {
			t.Errorf("%d: %q %+v, want %q %+v", i, b, e.Flags, msgs[i], flags[i])
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ holds %d files", len(ents))
	}
}
