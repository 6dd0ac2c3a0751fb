package mimeconv

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/memstore"
)

func put(t *testing.T, st *memstore.Store, b []byte) resource.Info {
	t.Helper()
	info, err := st.Put(context.Background(), bytes.NewReader(b), resource.PutOptions{Size: int64(len(b))})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func leaf(t *testing.T, st *memstore.Store, b []byte, ct, disp, name string) placeholder.Part {
	t.Helper()
	info := put(t, st, b)
	p, err := placeholder.NewLeaf(info.ID, info.Size, ct, disp, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// native is a message as the webmail writes it: text and HTML
// alternatives, an attachment with a non-ASCII name, a Bcc, Pullmail's own
// envelope headers.
func native(t *testing.T, st *memstore.Store) (*placeholder.Message, []byte) {
	t.Helper()
	file := bytes.Repeat([]byte{0, 1, 2, 0xff, '\n', '-', '-', '='}, 5000)
	text := "Grüße aus Köln,\nbis bald. " + strings.Repeat("A long line of text that goes on. ", 10) + "\n-- \nAlice\n"
	m := placeholder.New("Älice Müller <alice@a.test>", []string{"Bob <bob@b.test>", "carol@c.test"}, nil, []string{"dave@d.test"}, "Grüße — a subject long enough that it needs to be folded somewhere in its middle")
	m.Parts = []placeholder.Part{
		placeholder.Alternative(leaf(t, st, []byte(text), "text/plain; charset=utf-8", "", ""),
			leaf(t, st, []byte("<p>Grüße</p>"), "text/html; charset=utf-8", "", "")),
		leaf(t, st, file, "application/octet-stream", "attachment", "Übersicht 2026.bin"),
	}
	m.Header.SetString(placeholder.HDate, "Thu, 03 Dec 2026 09:00:00 +0000")
	m.Header.SetString(placeholder.HMessageID, "<n1@a.test>")
	m.Header.SetString(placeholder.HBodyDigest, "<"+strings.Repeat("A", 43)+">")
	if err := m.Validate(placeholder.Limits{}); err != nil {
		t.Fatal(err)
	}
	return m, file
}

func compose(t *testing.T, st *memstore.Store, m *placeholder.Message, opt ComposeOptions) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Compose(context.Background(), &b, m, st, opt); err != nil {
		t.Fatalf("Compose: %v", err)
	}
	return b.Bytes()
}

// TestCompose: what Compose writes, read by Go's own net/mail and
// mime/multipart (parsers this package does not share code with).
func TestCompose(t *testing.T) {
	st := memstore.New()
	m, file := native(t, st)
	out := compose(t, st, m, ComposeOptions{})
	if !bytes.Equal(out, compose(t, st, m, ComposeOptions{})) {
		t.Fatal("two renderings of one message differ")
	}
	for i, ln := range bytes.Split(out, []byte("\r\n")) {
		if bytes.ContainsAny(ln, "\r\n") || len(ln) > 998 {
			t.Fatalf("line %d: bare CR/LF or longer than 998: %q", i, ln)
		}
		if i < 12 && len(ln) > 78 {
			t.Errorf("header line %d is %d characters: %q", i, len(ln), ln)
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	dec := new(mime.WordDecoder)
	subj, _ := dec.DecodeHeader(msg.Header.Get("Subject"))
	if subj != m.Header.Get(placeholder.HSubject).String() {
		t.Errorf("Subject decodes to %q", subj)
	}
	from, err := msg.Header.AddressList("From")
	if err != nil || from[0].Name != "Älice Müller" || from[0].Address != "alice@a.test" {
		t.Errorf("From %v %v", from, err)
	}
	if to, _ := msg.Header.AddressList("To"); len(to) != 2 {
		t.Errorf("To %v", to)
	}
	for _, h := range []string{"Bcc", "Body-Digest"} {
		if v := msg.Header.Get(h); v != "" {
			t.Errorf("%s written: %q", h, v)
		}
	}
	if msg.Header.Get("Message-ID") != "<n1@a.test>" || msg.Header.Get("MIME-Version") != "1.0" {
		t.Errorf("headers %v", msg.Header)
	}
	mt, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if mt != "multipart/mixed" || !strings.HasPrefix(params["boundary"], "=_") {
		t.Fatalf("Content-Type %q", msg.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	alt, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	amt, aparams, _ := mime.ParseMediaType(alt.Header.Get("Content-Type"))
	if amt != "multipart/alternative" {
		t.Fatalf("first part %q", amt)
	}
	ar := multipart.NewReader(alt, aparams["boundary"])
	tp, err := ar.NextPart() // mime/multipart decodes quoted-printable itself
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(tp)
	if !strings.HasPrefix(string(text), "Grüße aus Köln,\r\nbis bald.") || !strings.HasSuffix(string(text), "-- \r\nAlice\r\n") {
		t.Errorf("text part %q", text)
	}
	att, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if att.FileName() != "Übersicht 2026.bin" || att.Header.Get("Content-Transfer-Encoding") != "base64" {
		t.Errorf("attachment headers %v (filename %q)", att.Header, att.FileName())
	}
	got, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, att))
	if err != nil || !bytes.Equal(got, file) {
		t.Errorf("attachment: %d bytes, %v; want the file's %d", len(got), err, len(file))
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("after the attachment: %v, want the end", err)
	}
	// The author's copy keeps Bcc.
	if out := compose(t, st, m, ComposeOptions{KeepBcc: true}); !bytes.Contains(out, []byte("\r\nBcc: dave@d.test\r\n")) {
		t.Error("KeepBcc wrote no Bcc")
	}
}

// TestComposeConvert: Compose then Convert gives back the same tree and the
// same resources (text gains CRLF line ends, as MIME wants), for a message
// written in Pullmail and for every corpus message converted first.
func TestComposeConvert(t *testing.T) {
	st := memstore.New()
	m, _ := native(t, st)
	msgs := []*placeholder.Message{m}
	files, _ := filepath.Glob("testdata/corpus/*.eml")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		res, err := Convert(context.Background(), bytes.NewReader(b), st, Options{})
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, res.Message)
	}
	for i, m := range msgs {
		out := compose(t, st, m, ComposeOptions{})
		res, err := Convert(context.Background(), bytes.NewReader(out), st, Options{})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := m.Leaves()
		got, _ := res.Message.Leaves()
		if len(got) != len(want) {
			t.Fatalf("message %d: %d leaves after the round trip, want %d\n%s", i, len(got), len(want), out)
		}
		for j := range want {
			w, g := want[j], got[j]
			if strings.HasPrefix(w.ContentType, "text/") {
				continue // line ends become CRLF
			}
			if g.ID != w.ID || g.ContentType != w.ContentType || g.Filename != w.Filename {
				t.Errorf("message %d leaf %d: %+v, want %+v", i, j, g, w)
			}
		}
		if s := res.Message.Header.Get(placeholder.HSubject).String(); s != m.Header.Get(placeholder.HSubject).String() {
			t.Errorf("message %d: Subject %q, want %q", i, s, m.Header.Get(placeholder.HSubject).String())
		}
	}
}
