package resource

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestVerifier(t *testing.T) {
	data := []byte("hello, pullmail")
	id := IDOf(data)
	other := IDOf([]byte("something else"))
	tests := []struct {
		name    string
		opt     PutOptions
		wantErr error // nil: succeeds with id
	}{
		{"no expectations", PutOptions{Size: -1}, nil},
		{"want matches", PutOptions{Want: id, Size: -1}, nil},
		{"size matches", PutOptions{Size: int64(len(data))}, nil},
		{"all match", PutOptions{Want: id, Size: int64(len(data)), Limit: int64(len(data))}, nil},
		{"limit above", PutOptions{Size: -1, Limit: 1000}, nil},
		{"want differs", PutOptions{Want: other, Size: -1}, ErrMismatch},
		{"size short", PutOptions{Size: int64(len(data)) + 1}, ErrMismatch},
		{"size long", PutOptions{Size: int64(len(data)) - 1}, ErrMismatch},
		{"size zero", PutOptions{Size: 0}, ErrMismatch},
		{"limit below", PutOptions{Size: -1, Limit: int64(len(data)) - 1}, ErrTooLarge},
		{"limit one", PutOptions{Size: -1, Limit: 1}, ErrTooLarge},
		{"want not canonical", PutOptions{Want: "../../etc/passwd", Size: -1}, ErrBadID},
	}
	for _, tt := range tests {
		for _, rd := range []struct {
			name string
			r    func() io.Reader
		}{
			{"whole", func() io.Reader { return bytes.NewReader(data) }},
			{"bytewise", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) }},
			{"data+EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) }},
		} {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				var out bytes.Buffer
				got, n, err := Copy(context.Background(), &out, rd.r(), tt.opt)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("Copy: err %v, want %v", err, tt.wantErr)
					}
					if got != "" {
						t.Errorf("Copy returned id %q with an error", got)
					}
					return
				}
				if err != nil {
					t.Fatalf("Copy: %v", err)
				}
				if got != id || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
					t.Errorf("Copy = %q, %d, %q; want %q, %d, %q", got, n, out.Bytes(), id, len(data), data)
				}
			})
		}
	}
}

func TestVerifierEmpty(t *testing.T) {
	got, n, err := Copy(context.Background(), io.Discard, strings.NewReader(""), PutOptions{Want: EmptyID, Size: 0})
	if err != nil || got != EmptyID || n != 0 {
		t.Fatalf("Copy(empty) = %q, %d, %v; want %q, 0, nil", got, n, err, EmptyID)
	}
}

// TestVerifierLimitEarly checks that ErrTooLarge comes as soon as the limit is
// passed, not at the end of an endless stream.
func TestVerifierLimitEarly(t *testing.T) {
	endless := iotest.OneByteReader(zeros{})
	v, err := NewVerifier(endless, PutOptions{Size: -1, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, v)
	if !errors.Is(err, ErrTooLarge) || n != 10 {
		t.Fatalf("io.Copy = %d, %v; want 10, ErrTooLarge", n, err)
	}
	if v.ID() != "" {
		t.Errorf("ID() = %q after failure", v.ID())
	}
	// The error is sticky.
	if _, err := v.Read(make([]byte, 1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Read after failure: %v", err)
	}
}

// TestVerifierSizeEarly checks that a stream longer than its declared size
// fails before the end.
func TestVerifierSizeEarly(t *testing.T) {
	_, n, err := Copy(context.Background(), io.Discard, zeros{}, PutOptions{Size: 100})
	if !errors.Is(err, ErrMismatch) || n > 100 {
		t.Fatalf("Copy = %d, %v; want <= 100, ErrMismatch", n, err)
	}
}

func TestCopyReaderError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(make([]byte, 100)), iotest.ErrReader(boom))
	_, _, err := Copy(context.Background(), io.Discard, r, PutOptions{Size: -1})
	if !errors.Is(err, boom) {
		t.Fatalf("Copy: %v, want boom", err)
	}
}

func TestCopyContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &cancelAfter{r: zeros{}, n: 3 * CopyBufferSize, cancel: cancel}
	_, n, err := Copy(ctx, io.Discard, r, PutOptions{Size: -1})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Copy: %v, want context.Canceled", err)
	}
	if n > 4*CopyBufferSize {
		t.Errorf("Copy went on for %d bytes after cancellation", n)
	}
}

func TestCopyWriteError(t *testing.T) {
	boom := errors.New("disk full")
	_, _, err := Copy(context.Background(), errWriter{boom}, strings.NewReader("x"), PutOptions{Size: -1})
	if !errors.Is(err, boom) {
		t.Fatalf("Copy: %v, want disk full", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n -= n
	if c.n <= 0 {
		c.cancel()
	}
	return n, err
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }
