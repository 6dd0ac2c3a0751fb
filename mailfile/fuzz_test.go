package mailfile

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

func addVectors(f *testing.F) {
	for _, name := range []string{"mboxrd.mbox", "crlf.mbox", "mboxo.mbox"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("From a\r\n>From x\r\r\nFrom b\n\n\nFrom"))
}

// FuzzMboxReader: any input reads without a panic; the messages' offsets
// are increasing and within the input, and a reader resumed at any
// message's End reads the same messages after it.
func FuzzMboxReader(f *testing.F) {
	addVectors(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, v := range []Variant{MboxRD, MboxO} {
			got, err := readAll(t, in, v, false)
			if err != nil {
				if !errors.Is(err, ErrNotMbox) {
					t.Fatalf("error other than ErrNotMbox: %v", err)
				}
				continue
			}
			var last int64
			for _, m := range got {
				if m.off < last || m.end < m.off || m.end > int64(len(in)) {
					t.Fatalf("offsets %d-%d after %d in %d bytes", m.off, m.end, last, len(in))
				}
				last = m.end
			}
			if len(got) > 1 {
				e := got[0].end
				rest, err := readAll(t, in[e:], v, false)
				if err != nil || len(rest) != len(got)-1 {
					t.Fatalf("resumed at %d: %d messages (%v), want %d", e, len(rest), err, len(got)-1)
				}
				for i := range rest {
					if rest[i].body != got[i+1].body || rest[i].off != got[i+1].off-e {
						t.Fatalf("resumed message %d differs", i)
					}
				}
			}
		}
	})
}

// FuzzMboxRoundTrip: messages cut from any input, written by MboxWriter,
// read back byte for byte.
func FuzzMboxRoundTrip(f *testing.F) {
	addVectors(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		msgs := []string{}
		for _, p := range bytes.Split(in, []byte{0}) {
			msgs = append(msgs, string(p))
		}
		file, err := writeAll(t, msgs)
		if errors.Is(err, ErrUnwritable) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(t, file, MboxRD, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(msgs) {
			t.Fatalf("%d messages back, want %d", len(got), len(msgs))
		}
		for i := range msgs {
			if got[i].body != msgs[i] {
				t.Fatalf("message %d: %q, want %q", i, got[i].body, msgs[i])
			}
		}
	})
}

// FuzzMaildirName: any name splits without a panic, and flags written by
// String read back the same.
func FuzzMaildirName(f *testing.F) {
	f.Add("1700.M1P1.host:2,DFPRST")
	f.Add("a:b:2,")
	f.Add(":::")
	f.Fuzz(func(t *testing.T, name string) {
		u, fl := SplitName(name)
		if len(u) > len(name) {
			t.Fatal("unique part longer than the name")
		}
		if _, back := SplitName("x:2," + fl.String()); back != fl {
			t.Fatalf("flags %+v do not survive String", fl)
		}
		_ = ParseStatus(name, name)
	})
}
