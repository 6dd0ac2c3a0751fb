package mimeconv

import (
	"bufio"
	"context"
	"encoding/base64"
	"io"
	"testing"
	"time"

	"github.com/pullmail/pullmail/internal/memwatch"
	"github.com/pullmail/pullmail/resource/fsstore"
)

// b64message streams a message with one attachment of size pseudo-random
// bytes, base64 in 76-character CRLF lines, without holding it.
func b64message(size int64) io.Reader {
	head := "From: a@example.org\r\nTo: b@example.net\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe file.\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\n\r\n"
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 256<<10)
		enc := base64.NewEncoder(base64.StdEncoding, &lineWriter{w: bw})
		buf := make([]byte, 57*1024)
		x := uint32(1)
		for left := size; left > 0; {
			n := min(int64(len(buf)), left)
			for i := range buf[:n] {
				x = x*1664525 + 1013904223
				buf[i] = byte(x >> 24)
			}
			enc.Write(buf[:n])
			left -= n
		}
		enc.Close()
		bw.WriteString("\r\n--b--\r\n")
		bw.Flush()
		pw.Close()
	}()
	return io.MultiReader(stringReader(head), pr)
}

func stringReader(s string) io.Reader { return &stringsReader{s: s} }

type stringsReader struct{ s string }

func (r *stringsReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(p, r.s)
	r.s = r.s[n:]
	return n, nil
}

// lineWriter breaks a base64 stream into 76-character CRLF lines.
type lineWriter struct {
	w   io.Writer
	col int
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if l.col == 76 {
			if _, err := l.w.Write([]byte("\r\n")); err != nil {
				return 0, err
			}
			l.col = 0
		}
		k := min(76-l.col, len(p))
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		l.col += k
		p = p[k:]
	}
	return n, nil
}

// BenchmarkConvertLarge converts a message with a 64 MiB base64 attachment
// into a file store and renders it back: MiB/s of the decoded attachment
// each way, and the peak heap, which must not grow with the size (streaming,
// constant memory).
func BenchmarkConvertLarge(b *testing.B) {
	const size = 64 << 20
	ctx := context.Background()
	st, err := fsstore.New(b.TempDir(), fsstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	peak := memwatch.Start()
	b.SetBytes(size)
	b.ResetTimer()
	var convert, render time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		res, err := Convert(ctx, b64message(size), st, Options{TempDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := Render(ctx, io.Discard, res.Record, st); err != nil {
			b.Fatal(err)
		}
		convert += t1.Sub(t0)
		render += time.Since(t1)
		if res.Record.LitsID != "" || len(res.Record.Ops) != 7 {
			b.Fatalf("the attachment did not re-encode: %d ops, lits %q", len(res.Record.Ops), res.Record.LitsID)
		}
	}
	b.StopTimer()
	heap := peak.Stop()
	mib := float64(size) * float64(b.N) / (1 << 20)
	b.ReportMetric(mib/convert.Seconds(), "convert-MiB/s")
	b.ReportMetric(mib/render.Seconds(), "render-MiB/s")
	b.ReportMetric(heap, "peak-heap-MiB")
}
