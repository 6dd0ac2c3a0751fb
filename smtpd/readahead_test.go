package smtpd

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// TestReadAhead: what the consumer reads is the source, byte for byte and
// in order, then the source's own error, whatever the chunk sizes.
func TestReadAhead(t *testing.T) {
	data := make([]byte, 1<<20+17)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	broken := errors.New("connection reset")
	for _, tc := range []struct {
		name    string
		src     io.Reader
		chunk   int
		want    []byte
		wantErr error
	}{
		{"whole", bytes.NewReader(data), 64 << 10, data, nil},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data[:5000])), 7, data[:5000], nil},
		{"half reads", iotest.HalfReader(bytes.NewReader(data)), 4096, data, nil},
		{"data and EOF together", iotest.DataErrReader(bytes.NewReader(data)), 1000, data, nil},
		{"empty", bytes.NewReader(nil), 16, nil, nil},
		{"error after data", io.MultiReader(bytes.NewReader(data[:3000]), iotest.ErrReader(broken)), 1024, data[:3000], broken},
		{"unexpected EOF", io.MultiReader(bytes.NewReader(data[:10]), iotest.ErrReader(io.ErrUnexpectedEOF)), 4, data[:10], io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra := newReadAhead(tc.src, tc.chunk, 3)
			defer ra.Stop()
			got, err := io.ReadAll(ra)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("read %d bytes, not the source's %d", len(got), len(tc.want))
			}
			// The error stays.
			if n, err := ra.Read(make([]byte, 10)); n != 0 || err == nil {
				t.Errorf("after the end: %d, %v", n, err)
			}
		})
	}
	if err := iotest.TestReader(newReadAhead(bytes.NewReader(data), 4096, 2), data); err != nil {
		t.Error(err)
	}
}

// TestReadAheadStop: Stop in the middle returns once the goroutine no
// longer reads the source, so the source can be drained by its owner.
func TestReadAheadStop(t *testing.T) {
	pr, pw := io.Pipe()
	ra := newReadAhead(pr, 8, 2)
	go pw.Write([]byte("0123456789abcdef"))
	b := make([]byte, 4)
	if _, err := io.ReadFull(ra, b); err != nil || string(b) != "0123" {
		t.Fatalf("%q %v", b, err)
	}
	// The goroutine is now blocked in the pipe's Read: Stop waits for it,
	// and it ends when the owner closes the source (as a connection's
	// deadline would).
	stopped := make(chan struct{})
	go func() { ra.Stop(); close(stopped) }()
	pw.CloseWithError(io.ErrUnexpectedEOF)
	<-stopped
	ra.Stop() // twice is fine
	// The goroutine reads at most its buffers ahead, and nothing after
	// Stop: the rest is the owner's to drain.
	src := bytes.NewReader(make([]byte, 1<<20))
	ra2 := newReadAhead(src, 8, 1)
	if _, err := io.ReadFull(ra2, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	ra2.Stop()
	left := src.Len()
	if left < 1<<20-3*8 {
		t.Errorf("the read-ahead took %d bytes, more than its buffers", 1<<20-left)
	}
	if _, err := io.ReadFull(ra2, make([]byte, 100)); err == nil {
		t.Error("read after Stop gave no error")
	}
	if src.Len() != left {
		t.Errorf("the source was read after Stop: %d left, then %d", left, src.Len())
	}
}
