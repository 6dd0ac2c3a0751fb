package blobstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/blobstore"
	"github.com/pullmail/pullmail/resource/bucket"
	"github.com/pullmail/pullmail/resource/storetest"
)

// flaky is a bucket whose streams end early while it is set, as a
// connection dropped mid-body does.
type flaky struct {
	*bucket.Mem
	on atomic.Bool
}

func (f *flaky) Read(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	r, err := f.Mem.Read(ctx, name, off, n)
	if err != nil || !f.on.Load() {
		return r, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(r, 1000), errReader{io.ErrUnexpectedEOF}), r}, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestShortReads: a stream that ends early, or an object removed while it
// is read, is a read failure; only an object shorter than its Info is
// damaged.
func TestShortReads(t *testing.T) {
	b := &flaky{Mem: bucket.NewMem()}
	s := blobstore.New(b, blobstore.Options{})
	data := storetest.Data(1, 3*storetest.ChunkSize)
	info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	readAll := func() error {
		o, err := s.Open(t.Context(), info.ID)
		if err != nil {
			return err
		}
		defer o.Close()
		_, err = io.ReadAll(o)
		return err
	}

	b.on.Store(true)
	if err := readAll(); err == nil || errors.Is(err, resource.ErrDamaged) {
		t.Errorf("a stream ending early: %v, want a read error, not ErrDamaged", err)
	}
	b.on.Store(false)
	if err := readAll(); err != nil {
		t.Errorf("after the network recovered: %v", err)
	}

	o, err := s.Open(t.Context(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(t.Context(), info.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(o); err == nil || errors.Is(err, resource.ErrDamaged) {
		t.Errorf("an object removed while read: %v, want a read error, not ErrDamaged", err)
	}
	o.Close()
	if s.DamageCount() != 0 {
		t.Errorf("DamageCount = %d, want 0", s.DamageCount())
	}

	// Cut under an open Object: damaged.
	if _, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	o, err = s.Open(t.Context(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	w, _ := b.Create(t.Context(), bucket.CreateOptions{})
	w.Write(data[:storetest.ChunkSize+10])
	if err := w.Commit(t.Context(), string(info.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(o); !errors.Is(err, resource.ErrDamaged) {
		t.Errorf("an object cut under an open Object: %v, want ErrDamaged", err)
	}
}
