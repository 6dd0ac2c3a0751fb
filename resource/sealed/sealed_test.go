package sealed_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/bucket"
	"github.com/pullmail/pullmail/resource/s3store"
	"github.com/pullmail/pullmail/resource/s3store/s3test"
	"github.com/pullmail/pullmail/resource/sealed"
	"github.com/pullmail/pullmail/resource/storetest"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, sealed.KeySize) }

// corrupting lets the suite's damage cases flip the ciphertext of a plain
// byte.
type corrupting struct {
	*sealed.Store
	b bucket.Bucket
}

func (c corrupting) Corrupt(t *testing.T, id resource.ID, off int64) {
	t.Helper()
	if err := bucket.Flip(t.Context(), c.b, string(id), sealed.StoredOffset(off)); err != nil {
		t.Fatal(err)
	}
}

func newSealed(t *testing.T, b bucket.Bucket, key []byte) corrupting {
	t.Helper()
	s, err := sealed.New(b, key, sealed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return corrupting{s, b}
}

func TestConformanceMem(t *testing.T) {
	storetest.Test(t, func(t *testing.T) resource.Store { return newSealed(t, bucket.NewMem(), testKey(1)) })
}

func TestPutRemoveRace(t *testing.T) {
	storetest.PutRemoveRace(t, func(t *testing.T) resource.Store { return newSealed(t, bucket.NewMem(), testKey(1)) })
}

func TestConformanceS3(t *testing.T) {
	srv := s3test.Start(t)
	storetest.Test(t, func(t *testing.T) resource.Store {
		return newSealed(t, srv.NewBucket(t, s3store.Options{}), testKey(2))
	})
}

// TestS3Multipart seals resources of several parts: the header tag, known
// only at the end, is patched into the first part, held back until then.
func TestS3Multipart(t *testing.T) {
	srv := s3test.Start(t)
	b := srv.NewBucket(t, s3store.Options{PartSize: 5 << 20})
	s := newSealed(t, b, testKey(3))
	for i, n := range []int{5<<20 - sealed.HeaderSize, 11<<20 + 3} {
		data := storetest.Data(uint64(600+i), n)
		for _, want := range []resource.ID{"", resource.IDOf(data)} {
			info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1, Want: want})
			if err != nil || info.Size != int64(n) {
				t.Fatalf("Put(%d bytes) = %+v, %v", n, info, err)
			}
			if _, err := resource.Check(t.Context(), s, info.ID); err != nil {
				t.Errorf("Check(%d bytes): %v", n, err)
			}
		}
	}
}

// TestKeyAndPlace: the bytes are not stored in clear; another key, or an
// object moved under another ID, fails to open as damaged.
func TestKeyAndPlace(t *testing.T) {
	b := bucket.NewMem()
	s := newSealed(t, b, testKey(4))
	data := bytes.Repeat([]byte("secret attachment "), 10000)
	info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.Read(t.Context(), string(info.ID), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(r)
	r.Close()
	if bytes.Contains(raw, []byte("secret attachment")) {
		t.Error("the plain bytes are stored in clear")
	}
	if int64(len(raw)) != sealed.StoredSize(int64(len(data))) {
		t.Errorf("stored %d bytes, StoredSize says %d", len(raw), sealed.StoredSize(int64(len(data))))
	}
	other := newSealed(t, b, testKey(5))
	if _, err := other.Open(t.Context(), info.ID); !errors.Is(err, resource.ErrDamaged) {
		t.Errorf("Open with another key: %v, want ErrDamaged", err)
	}
	// The same bytes under another ID's name.
	moved := resource.IDOf([]byte("other"))
	w, _ := b.Create(t.Context(), bucket.CreateOptions{})
	w.Write(raw)
	if err := w.Commit(t.Context(), string(moved)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(t.Context(), moved); !errors.Is(err, resource.ErrDamaged) {
		t.Errorf("Open of an object moved under another ID: %v, want ErrDamaged", err)
	}
	if s.DamageCount() != 1 {
		t.Errorf("DamageCount = %d, want 1", s.DamageCount())
	}
}

func TestPlainSize(t *testing.T) {
	for size := int64(0); size < 3*sealed.ChunkSize+2; size += 4093 {
		for _, n := range []int64{size, sealed.ChunkSize * (size / 4093 % 4)} {
			got, err := sealed.PlainSize(sealed.StoredSize(n))
			if err != nil || got != n {
				t.Errorf("PlainSize(StoredSize(%d)) = %d, %v", n, got, err)
			}
		}
	}
	for _, stored := range []int64{0, sealed.HeaderSize, sealed.HeaderSize + sealed.TagSize - 1, sealed.HeaderSize + sealed.SealedChunk + sealed.TagSize} {
		if _, err := sealed.PlainSize(stored); !errors.Is(err, resource.ErrDamaged) {
			t.Errorf("PlainSize(%d): %v, want ErrDamaged", stored, err)
		}
	}
}
