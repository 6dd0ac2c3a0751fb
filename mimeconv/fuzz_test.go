package mimeconv

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource/memstore"
)

func addCorpus(f *testing.F) {
	files, _ := filepath.Glob("testdata/corpus/*.eml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) < 8<<10 {
			f.Add(b)
		}
	}
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\nREVG\r\n--a--"))
	f.Add([]byte("Content-Transfer-Encoding: quoted-printable\n\n=\n=4\n=41=\r\n \t"))
}

// FuzzConvert: any input converts, to a valid placeholder, and renders back
// exactly. This is the package's promise, checked on what no one wrote.
func FuzzConvert(f *testing.F) {
	addCorpus(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		ctx := context.Background()
		st := memstore.New()
		res, err := Convert(ctx, bytes.NewReader(msg), st, Options{})
		if err != nil {
			t.Fatalf("Convert: %v", err)
		}
		if err := res.Message.Validate(placeholder.Limits{}); err != nil {
			t.Fatalf("invalid placeholder: %v", err)
		}
		var out bytes.Buffer
		if err := Render(ctx, &out, res.Record, st); err != nil {
			t.Fatalf("Render: %v", err)
		}
		if !bytes.Equal(out.Bytes(), msg) {
			t.Fatalf("not lossless: %s", firstDiff(out.Bytes(), msg))
		}
		// Written as MIME anew (Compose), the placeholder converts back to
		// the same tree.
		out.Reset()
		if err := Compose(ctx, &out, res.Message, st, ComposeOptions{}); err != nil {
			t.Fatalf("Compose: %v", err)
		}
		again, err := Convert(ctx, bytes.NewReader(out.Bytes()), st, Options{})
		if err != nil {
			t.Fatalf("Convert of the composed message: %v", err)
		}
		want, _ := res.Message.Leaves()
		got, _ := again.Message.Leaves()
		if len(got) != len(want) {
			t.Fatalf("%d leaves after Compose and Convert, want %d:\n%s", len(got), len(want), out.Bytes())
		}
	})
}

// FuzzParseRecord: a stored record is untrusted input too; reading and
// rendering one must fail cleanly, never panic or run away.
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"v":1,"size":3,"sha256":"ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0","lits":"YWJj","ops":[{"op":"lit","n":3}]}`))
	f.Add([]byte(`{"v":1,"size":4,"sha256":"ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0","ops":[{"op":"open","id":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"},{"op":"base64","n":1,"line":4,"eol":"\r\n"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := ParseRecord(data)
		if err != nil {
			return
		}
		var out bytes.Buffer
		_ = Render(context.Background(), &out, rec, memstore.New())
		if int64(out.Len()) > rec.Size+64<<10 {
			t.Fatalf("rendered %d bytes for a record of %d", out.Len(), rec.Size)
		}
	})
}
