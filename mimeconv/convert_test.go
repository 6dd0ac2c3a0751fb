package mimeconv

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/memstore"
)

// roundTrip converts msg, checks the placeholder, renders it back from the
// record and from the record's JSON form, and returns the result.
func roundTrip(t *testing.T, st *memstore.Store, msg []byte) *Result {
	t.Helper()
	ctx := context.Background()
	res, err := Convert(ctx, bytes.NewReader(msg), st, Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	if err := res.Message.Validate(placeholder.Limits{}); err != nil {
		t.Fatalf("placeholder not valid: %v\n%s", err, res.Message.Canonical())
	}
	if _, err := placeholder.Parse(res.Message.Canonical(), placeholder.Limits{}); err != nil {
		t.Fatalf("placeholder does not parse back: %v", err)
	}
	var out bytes.Buffer
	if err := Render(ctx, &out, res.Record, st); err != nil {
		t.Fatalf("Render: %v", err)
	}
	if !bytes.Equal(out.Bytes(), msg) {
		t.Fatalf("rendered %d bytes, not the original %d:\n%s", out.Len(), len(msg), firstDiff(out.Bytes(), msg))
	}
	js, err := json.Marshal(res.Record)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := ParseRecord(js)
	if err != nil {
		t.Fatalf("ParseRecord of %s: %v", js, err)
	}
	out.Reset()
	if err := Render(ctx, &out, rec, st); err != nil || !bytes.Equal(out.Bytes(), msg) {
		t.Fatalf("Render of the parsed record: %v, equal %v", err, bytes.Equal(out.Bytes(), msg))
	}
	for _, info := range res.Resources {
		if _, err := st.Stat(ctx, info.ID); err != nil {
			t.Fatalf("resource %s listed but not stored: %v", info.ID, err)
		}
	}
	return res
}

func firstDiff(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	lo := max(0, i-40)
	return "at byte " + itoa(i) + ":\n got  " + quote(a[lo:min(len(a), i+40)]) + "\n want " + quote(b[lo:min(len(b), i+40)])
}

func quote(b []byte) string { js, _ := json.Marshal(string(b)); return string(js) }
func itoa(i int) string     { js, _ := json.Marshal(i); return string(js) }

// TestCorpus: every message of testdata/corpus converts to a valid
// placeholder and renders back byte for byte (testdata/gen_corpus.py says
// what each one is).
func TestCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/corpus/*.eml")
	if err != nil || len(files) < 20 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	st := memstore.New()
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			msg, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, st, msg)
		})
	}
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func leaves(t *testing.T, m *placeholder.Message) []placeholder.Leaf {
	t.Helper()
	ls, err := m.Leaves()
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func opKinds(r *Record) string {
	var ks []string
	for _, op := range r.Ops {
		ks = append(ks, op.Op)
	}
	return strings.Join(ks, " ")
}

// TestSameFileOneResource: a file sent by two different encoders (76
// characters and CRLF; 64 and LF) is one resource, the file's own bytes, and
// neither keeps its base64 text (the record holds headers and boundaries).
func TestSameFileOneResource(t *testing.T) {
	file := read(t, "attachment.bin")
	want := resource.IDOf(file)
	st := memstore.New()
	for _, name := range []string{"02-attachment.eml", "03-attachment-lf64.eml"} {
		res := roundTrip(t, st, read(t, "corpus/"+name))
		ls := leaves(t, res.Message)
		last := ls[len(ls)-1]
		if last.ID != want || last.Size != int64(len(file)) || last.Filename != "data.bin" || last.Disposition != "attachment" {
			t.Errorf("%s: attachment leaf %+v, want the file %s", name, last, want)
		}
		if strings.Contains(opKinds(res.Record), OpSkip) || len(res.Record.Lits) > 1024 || res.Record.LitsID != "" {
			t.Errorf("%s: the base64 text was kept: ops %s, %d literal bytes", name, opKinds(res.Record), len(res.Record.Lits))
		}
	}
}

// TestHeaders: what the placeholder shows of a message from outside.
func TestHeaders(t *testing.T) {
	st := memstore.New()
	get := func(h placeholder.Header, n string) string { return h.Get(n).String() }

	m := roundTrip(t, st, read(t, "corpus/04-alternative-related.eml")).Message
	if got := get(m.Header, placeholder.HSubject); got != "Grüße" {
		t.Errorf("Subject %q, want the RFC 2047 word decoded", got)
	}
	if got := get(m.Header, placeholder.HThreadID); got != "<root@example.org>" {
		t.Errorf("X-Thread-ID %q, want the first of References", got)
	}
	var img placeholder.Part
	var walk func([]placeholder.Part)
	walk = func(ps []placeholder.Part) {
		for _, p := range ps {
			if p.IsLeaf() && strings.HasPrefix(p.Header.Get(placeholder.HContentType).List()[1], "image/png") {
				img = p
			}
			walk(p.Parts)
		}
	}
	walk(m.Parts)
	if got := get(img.Header, OriginalPrefix+"Content-ID"); got != "<logo@x>" {
		t.Errorf("the image's own Content-ID is %q, want it kept as %sContent-ID", got, OriginalPrefix)
	}

	m = roundTrip(t, st, read(t, "corpus/09-latin1-2231.eml")).Message
	if got := get(m.Header, placeholder.HSubject); got != "Grüße" {
		t.Errorf("ISO-8859-1 Subject decoded to %q", got)
	}
	if got := get(m.Header, placeholder.HFrom); got != "Jörg <joerg@example.de>" {
		t.Errorf("From %q", got)
	}
	ls := leaves(t, m)
	if ls[1].Filename != "übersicht.pdf" || ls[1].ContentType != "application/pdf" {
		t.Errorf("RFC 2231 filename: leaf %+v", ls[1])
	}

	m = roundTrip(t, st, read(t, "corpus/16-odd-headers.eml")).Message
	for name, want := range map[string]string{
		placeholder.HReceived:          "from a by b; Thu, 03 Dec 2026 08:00:00 +0000, from c by d; Thu, 03 Dec 2026 07:00:00 +0000",
		placeholder.HTo:                "bob@example.net,\tcarol@example.net",
		OriginalPrefix + "Subject":     "folded  subject line, a second subject",
		OriginalPrefix + "Body-Digest": "<forged>",
		OriginalPrefix + "Message-ID":  "not-an-id",
	} {
		if got := get(m.Header, name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	// A one-part message's Content-* fields describe its one leaf.
	if got := get(m.Parts[0].Header, OriginalPrefix+"Content-ID"); got != "<not-a-resource@x>" {
		t.Errorf("the leaf's %sContent-ID: %q", OriginalPrefix, got)
	}
	for _, n := range []string{placeholder.HBodyDigest, placeholder.HSubject, placeholder.HMessageID, "X-Empty"} {
		if m.Header.Has(n) {
			t.Errorf("%s should not be carried under its own name: %q", n, get(m.Header, n))
		}
	}
}

// TestEncodings: which bodies re-encode and which keep their text.
func TestEncodings(t *testing.T) {
	var goQP bytes.Buffer
	qw := quotedprintable.NewWriter(&goQP)
	qw.Write([]byte("Grüße, a line long enough that the encoder must break it at seventy-six characters, and a trailing space \r\nsecond line = sign\r\n"))
	qw.Close()
	goQPMsg := "From: a@example.org\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + goQP.String()

	for _, tc := range []struct {
		name, msg string
		ops       string // the operations after the header's literal
	}{
		{"go-qp", goQPMsg, "lit open qp"},
		{"other-qp", string(read(t, "corpus/15-odd-qp.eml")), "lit open skip lit"},
		{"lf-qp", string(read(t, "corpus/13-lf-only.eml")), "lit open skip lit"},
		{"irregular-base64", string(read(t, "corpus/14-irregular-base64.eml")), "lit open base64 skip lit"},
		{"identity", string(read(t, "corpus/01-plain.eml")), "lit open copy"},
		{"headers-only", string(read(t, "corpus/19-headers-only.eml")), "lit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := roundTrip(t, memstore.New(), []byte(tc.msg))
			got := opKinds(res.Record)
			if !strings.HasPrefix(got, tc.ops) || (tc.ops != "lit" && !strings.Contains(got, "open")) {
				t.Errorf("ops %q, want %q first", got, tc.ops)
			}
		})
	}
	// The decoded text is the same either way: the resource of the odd
	// encoder's part decodes its escapes.
	st := memstore.New()
	res := roundTrip(t, st, read(t, "corpus/15-odd-qp.eml"))
	ls := leaves(t, res.Message)
	if got, want := stored(t, st, ls[0].ID), "lower\u00fccase hex and a soft break at forty characters A needlessly escaped\r\nend\r\n"; got != want {
		t.Errorf("decoded %q, want %q", got, want)
	}
}

func stored(t *testing.T, st *memstore.Store, id resource.ID) string {
	t.Helper()
	o, err := st.Open(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
