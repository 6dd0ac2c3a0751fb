package cli

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/pullmail/pullmail/mailfile"
)

// WriteBenchMbox writes an mbox file of about size bytes for measuring
// imports (the benchmarks, and `pullmail bench` may use it): mail of a
// realistic mix, seeded so that every run writes the same bytes. Seven
// messages in ten are text of 2-10 KiB, the others carry an attachment
// of 32 KiB to 1 MiB (base64, random bytes, so no two are alike and
// nothing dedupes); every message has its own Message-ID. It returns the
// number of messages written.
func WriteBenchMbox(w io.Writer, size int64, seed uint64) (int, error) {
	rng := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)}))
	cw := &countingWriter{w: w}
	mw := mailfile.NewMboxWriter(cw)
	bw := bufio.NewWriterSize(nil, 64<<10)
	raw := make([]byte, 57*1024) // base64 lines of 76
	enc := make([]byte, base64.StdEncoding.EncodedLen(57))
	t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	for cw.n < size {
		date := t0.Add(time.Duration(n) * time.Minute)
		m, err := mw.Message(mailfile.FromLine("sender@example.org", date))
		if err != nil {
			return n, err
		}
		bw.Reset(m)
		fmt.Fprintf(bw, "From: Sender %d <sender@example.org>\r\nTo: alice@a.test\r\nSubject: message %d\r\n"+
			"Date: %s\r\nMessage-ID: <bench-%d-%d@example.org>\r\nMIME-Version: 1.0\r\n", n%97, n,
			date.Format(time.RFC1123Z), seed, n)
		text := 2048 + rng.IntN(8192)
		att := 0
		if rng.IntN(10) >= 7 {
			att = 32<<10 + rng.IntN(1<<20-32<<10)
		}
		if att > 0 {
			fmt.Fprintf(bw, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", n, n)
		}
		bw.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
		for i := 0; i < text; i += 64 {
			fmt.Fprintf(bw, "Line %6d of the text of message %8d, written for the benchmark.\r\n", i/64, n)
		}
		if att > 0 {
			fmt.Fprintf(bw, "--b%d\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"f%d.bin\"\r\n"+
				"Content-Transfer-Encoding: base64\r\n\r\n", n, n)
			for left := att; left > 0; {
				k := min(left, len(raw))
				for i := 0; i < k; i += 8 {
					v := rng.Uint64()
					for j := 0; j < 8 && i+j < k; j++ {
						raw[i+j] = byte(v >> (8 * j))
					}
				}
				for i := 0; i < k; i += 57 {
					e := min(i+57, k)
					l := base64.StdEncoding.EncodedLen(e - i)
					base64.StdEncoding.Encode(enc, raw[i:e])
					bw.Write(enc[:l])
					bw.WriteString("\r\n")
				}
				left -= k
			}
			fmt.Fprintf(bw, "--b%d--\r\n", n)
		}
		if err := bw.Flush(); err != nil {
			return n, err
		}
		if err := m.Close(); err != nil {
			return n, err
		}
		n++
	}
	return n, mw.Flush()
}
