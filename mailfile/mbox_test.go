package mailfile

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

type readMsg struct {
	from string
	body string
	off  int64
	end  int64
}

// readAll reads every message of an mbox file; small reads (iotest.OneByteReader
// on top) when tiny is set, to cross every buffer boundary.
func readAll(t testing.TB, in []byte, v Variant, tiny bool) ([]readMsg, error) {
	t.Helper()
	var src io.Reader = bytes.NewReader(in)
	r := NewMboxReader(src, v, 0)
	var out []readMsg
	for {
		m, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		var rd io.Reader = m
		if tiny {
			rd = iotest.OneByteReader(m)
		}
		b, err := io.ReadAll(rd)
		if err != nil {
			return out, err
		}
		if int64(len(b)) != m.Size() {
			t.Fatalf("Size %d, read %d", m.Size(), len(b))
		}
		out = append(out, readMsg{from: m.From, body: string(b), off: m.Offset, end: m.End()})
	}
}

func TestMboxRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		v    Variant
		want []readMsg
		err  error
	}{
		{"empty file", "", MboxRD, nil, nil},
		{"not mbox", "Subject: x\n\nbody\n", MboxRD, nil, ErrNotMbox},
		{"one LF", "From a@b Thu Dec  3 12:00:00 2026\nSubject: x\n\nbody\n\n", MboxRD,
			[]readMsg{{"a@b Thu Dec  3 12:00:00 2026", "Subject: x\n\nbody\n", 0, 52}}, nil},
		{"leading blank lines", "\n\r\nFrom a\nx\n", MboxRD, []readMsg{{"a", "x", 3, 12}}, nil},
		{"no trailing newline", "From a\nSubject: x\n\nbody", MboxRD, []readMsg{{"a", "Subject: x\n\nbody", 0, 23}}, nil},
		{"two CRLF", "From a\r\nA: 1\r\n\r\nx\r\n\r\nFrom b\r\nB: 2\r\n\r\ny\r\n\r\n", MboxRD,
			[]readMsg{{"a", "A: 1\r\n\r\nx\r\n", 0, 21}, {"b", "B: 2\r\n\r\ny\r\n", 21, 42}}, nil},
		{"no blank line before From_", "From a\nx\nFrom b\ny\n", MboxRD, []readMsg{{"a", "x", 0, 9}, {"b", "y", 9, 18}}, nil},
		{"mboxrd unquotes one", "From a\n>From x\n>>From y\n>>>From z\n> From not\n>Fromage\n\n", MboxRD,
			[]readMsg{{"a", "From x\n>From y\n>>From z\n> From not\n>Fromage\n", 0, 55}}, nil},
		{"mboxo unquotes only >From", "From a\n>From x\n>>From y\n\n", MboxO,
			[]readMsg{{"a", "From x\n>>From y\n", 0, 25}}, nil},
		{"From inside a line", "From a\nsay From here\n", MboxRD, []readMsg{{"a", "say From here", 0, 21}}, nil},
		{"empty messages", "From a\nFrom b\n\nFrom c\n", MboxRD, []readMsg{{"a", "", 0, 7}, {"b", "", 7, 15}, {"c", "", 15, 22}}, nil},
		{"bare CR at the end", "From a\nx\r\r\n", MboxRD, []readMsg{{"a", "x\r", 0, 11}}, nil},
		{"CR then EOF", "From a\nx\r", MboxRD, []readMsg{{"a", "x\r", 0, 9}}, nil},
		{"From_ line at EOF", "From a", MboxRD, []readMsg{{"a", "", 0, 6}}, nil},
	} {
		for _, tiny := range []bool{false, true} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := readAll(t, []byte(tc.in), tc.v, tiny)
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				if len(got) != len(tc.want) {
					t.Fatalf("got %d messages %+v, want %d", len(got), got, len(tc.want))
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Errorf("message %d: %+v, want %+v", i, got[i], tc.want[i])
					}
				}
			})
		}
	}
}

// TestMboxVectors reads the files of testdata.
func TestMboxVectors(t *testing.T) {
	for _, tc := range []struct {
		file   string
		v      Variant
		bodies []string
	}{
		{"mboxrd.mbox", MboxRD, []string{"Subject: one\n\nHello\nFrom the start\n",
			"Status: RO\nX-Status: AF\nSubject: two\n\n>From quoted twice\nFrom-not-a-separator\n"}},
		{"crlf.mbox", MboxRD, []string{"Subject: one\r\n\r\nHello\r\n", "Subject: two\r\n\r\nno final newline"}},
		{"mboxo.mbox", MboxO, []string{"Subject: o\n\nFrom here\n>>From there\n"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			in, err := os.ReadFile("testdata/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, in, tc.v, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.bodies) {
				t.Fatalf("%d messages, want %d", len(got), len(tc.bodies))
			}
			for i, m := range got {
				if m.body != tc.bodies[i] {
					t.Errorf("message %d: %q, want %q", i, m.body, tc.bodies[i])
				}
			}
			if got[len(got)-1].end != int64(len(in)) {
				t.Errorf("last End %d, file %d bytes", got[len(got)-1].end, len(in))
			}
		})
	}
}

// writeAll writes messages to an mbox file.
func writeAll(t testing.TB, msgs []string) ([]byte, error) {
	var buf bytes.Buffer
	w := NewMboxWriter(&buf)
	for i, m := range msgs {
		mw, err := w.Message(FromLine("s@example.org", time.Unix(int64(i), 0)))
		if err != nil {
			return nil, err
		}
		// Written in pieces of 3 bytes: the quoting crosses Write calls.
		for b := []byte(m); len(b) > 0; {
			n := min(3, len(b))
			if _, err := mw.Write(b[:n]); err != nil {
				return nil, err
			}
			b = b[n:]
		}
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// TestMboxRoundTrip: whatever messages are written come back exactly, at
// the offsets where they were written.
func TestMboxRoundTrip(t *testing.T) {
	long := strings.Repeat("x", 3*readBuffer+7)
	for _, msgs := range [][]string{
		{"Subject: a\n\nFrom me\n>From you\n>>>From them\n", "no newline", "", "\r\n", "x\r"},
		{"From start", ">From", "From", "\n\n\n"},
		{long + "\r\n" + long, "\r" + long + "\r", long[:readBuffer-1] + "\r\nFrom x"},
		{strings.Repeat(">", readBuffer-6) + "From x\n", strings.Repeat(">", readBuffer+3) + "From y\n"},
	} {
		file, err := writeAll(t, msgs)
		if err != nil {
			t.Fatal(err)
		}
		for _, tiny := range []bool{false, true} {
			got, err := readAll(t, file, MboxRD, tiny)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(msgs) {
				t.Fatalf("%d messages back, want %d", len(got), len(msgs))
			}
			for i := range msgs {
				if got[i].body != msgs[i] {
					t.Errorf("message %d: %.80q…, want %.80q…", i, got[i].body, msgs[i])
				}
			}
		}
	}
}

// TestMboxUnwritable: the one line the window cannot hold is refused, not
// written wrong.
func TestMboxUnwritable(t *testing.T) {
	_, err := writeAll(t, []string{strings.Repeat(">", readBuffer-5) + "From x\n"})
	if !errors.Is(err, ErrUnwritable) {
		t.Fatalf("err %v, want ErrUnwritable", err)
	}
}

// TestMboxResume: a reader started at a message's End (as an import that
// resumes) reads the rest, and Tee has had exactly the bytes before each End.
func TestMboxResume(t *testing.T) {
	in, err := os.ReadFile("testdata/mboxrd.mbox")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	r := NewMboxReader(bytes.NewReader(in), MboxRD, 0)
	r.Tee = h
	m, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, m); err != nil {
		t.Fatal(err)
	}
	end := m.End()
	if sum := sha256.Sum256(in[:end]); !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatalf("Tee after message 1 is not the digest of the first %d bytes", end)
	}
	r2 := NewMboxReader(bytes.NewReader(in[end:]), MboxRD, end)
	m2, err := r2.Next()
	if err != nil {
		t.Fatal(err)
	}
	if m2.Offset != end || !strings.HasPrefix(m2.From, "bob@") {
		t.Fatalf("resumed at %d: %q, want bob's at %d", m2.Offset, m2.From, end)
	}
	if _, err := io.Copy(io.Discard, m2); err != nil {
		t.Fatal(err)
	}
	if m2.End() != int64(len(in)) {
		t.Fatalf("End %d, want %d", m2.End(), len(in))
	}
	// Not reading a message to its end: Next skips the rest.
	r3 := NewMboxReader(bytes.NewReader(in), MboxRD, 0)
	r3.Tee = sha256.New()
	if _, err := r3.Next(); err != nil {
		t.Fatal(err)
	}
	m3, err := r3.Next()
	if err != nil || m3.Offset != end {
		t.Fatalf("second message after a skip: %v at %d, want %d", err, m3.Offset, end)
	}
}

func TestParseVariant(t *testing.T) {
	for in, want := range map[string]Variant{"": MboxRD, "mboxrd": MboxRD, "MBOXO": MboxO} {
		if v, err := ParseVariant(in); err != nil || v != want {
			t.Errorf("%q: %v %v", in, v, err)
		}
	}
	if _, err := ParseVariant("mboxcl2"); err == nil {
		t.Error("mboxcl2 accepted")
	}
}

func TestFromLine(t *testing.T) {
	got := FromLine("a b\n@c", time.Date(2026, 12, 3, 9, 5, 7, 0, time.FixedZone("x", 3600)))
	if want := "ab@c Thu Dec  3 08:05:07 2026"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if got := FromLine("", time.Unix(0, 0)); !strings.HasPrefix(got, "MAILER-DAEMON ") {
		t.Errorf("%q", got)
	}
}
