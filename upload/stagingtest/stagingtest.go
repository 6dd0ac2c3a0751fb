// Package stagingtest is the conformance suite for upload.Staging: every
// implementation (upload.FS, later S3 multipart) runs Test, so that the
// mailbox relies on the contract in package upload and not on one
// implementation's habits.
package stagingtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/upload"
)

// Test runs the suite. newStaging is called once per subtest and returns a
// function that opens the subtest's staging: each call must open the same
// backing storage afresh, as a restarted server would.
func Test(t *testing.T, newStaging func(t *testing.T) (open func() upload.Staging)) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func() upload.Staging)
	}{
		{"CreateGet", testCreateGet},
		{"Chunks", testChunks},
		{"Empty", testEmpty},
		{"WrongOffset", testWrongOffset},
		{"PastSize", testPastSize},
		{"DroppedReader", testDroppedReader},
		{"Restart", testRestart},
		{"Complete", testComplete},
		{"Delete", testDelete},
		{"Expire", testExpire},
		{"Concurrent", testConcurrent},
		{"BadIDs", testBadIDs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStaging(t)) })
	}
}

// Data returns n deterministic pseudo-random bytes.
func Data(seed uint64, n int) []byte {
	b := make([]byte, n)
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

var now = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

func create(t *testing.T, s upload.Staging, size int64, want resource.ID) upload.Session {
	t.Helper()
	sess := upload.Session{ID: upload.NewID(), UserID: 7, Size: size, Want: want, Created: now, Expires: now.Add(time.Hour)}
	if err := s.Create(t.Context(), sess); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return sess
}

func appendOK(t *testing.T, s upload.Staging, id string, off int64, b []byte) upload.Session {
	t.Helper()
	got, err := s.Append(t.Context(), id, off, bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Append at %d: %v", off, err)
	}
	if got.Offset != off+int64(len(b)) {
		t.Fatalf("Append at %d of %d bytes: offset %d", off, len(b), got.Offset)
	}
	return got
}

func staged(t *testing.T, s upload.Staging, id string) []byte {
	t.Helper()
	rc, err := s.Open(t.Context(), id)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading staged bytes: %v", err)
	}
	return b
}

func testCreateGet(t *testing.T, open func() upload.Staging) {
	s := open()
	want := resource.IDOf([]byte("x"))
	sess := create(t, s, 10, want)
	got, err := s.Get(t.Context(), sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != sess.ID || got.UserID != 7 || got.Size != 10 || got.Offset != 0 || got.Want != want ||
		got.Digest != "" || got.ContentID != "" || !got.Created.Equal(now) || !got.Expires.Equal(now.Add(time.Hour)) {
		t.Errorf("Get = %+v, want %+v", got, sess)
	}
	if err := s.Create(t.Context(), sess); !errors.Is(err, upload.ErrExists) {
		t.Errorf("Create again = %v, want ErrExists", err)
	}
	if _, err := s.Get(t.Context(), upload.NewID()); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("Get of an unknown id = %v, want ErrNotFound", err)
	}
}

func testChunks(t *testing.T, open func() upload.Staging) {
	s := open()
	data := Data(1, 1<<20+17)
	sess := create(t, s, int64(len(data)), "")
	off := int64(0)
	for _, n := range []int{1, 4096, 300000, 0, 500000} {
		appendOK(t, s, sess.ID, off, data[off:off+int64(n)])
		off += int64(n)
		if got, _ := s.Get(t.Context(), sess.ID); got.Offset != off || got.Digest != "" {
			t.Fatalf("Get after %d bytes = %+v", off, got)
		}
	}
	last := appendOK(t, s, sess.ID, off, data[off:])
	if last.Digest != resource.IDOf(data) || !last.Full() {
		t.Fatalf("full session = %+v, want digest %s", last, resource.IDOf(data))
	}
	if !bytes.Equal(staged(t, s, sess.ID), data) {
		t.Error("staged bytes differ from those appended")
	}
	// An empty Append at Size succeeds and changes nothing.
	if got := appendOK(t, s, sess.ID, last.Size, nil); got.Digest != last.Digest {
		t.Errorf("empty Append at Size = %+v", got)
	}
}

func testEmpty(t *testing.T, open func() upload.Staging) {
	s := open()
	sess := create(t, s, 0, "")
	got, err := s.Get(t.Context(), sess.ID)
	if err != nil || !got.Full() || got.Digest != resource.EmptyID {
		t.Fatalf("Get of a new empty session = %+v, %v; want full with the empty digest", got, err)
	}
	appendOK(t, s, sess.ID, 0, nil)
	if b := staged(t, s, sess.ID); len(b) != 0 {
		t.Errorf("staged %d bytes", len(b))
	}
}

func testWrongOffset(t *testing.T, open func() upload.Staging) {
	s := open()
	data := Data(2, 100)
	sess := create(t, s, 100, "")
	appendOK(t, s, sess.ID, 0, data[:40])
	for _, off := range []int64{0, 39, 41, 100, 101} {
		got, err := s.Append(t.Context(), sess.ID, off, bytes.NewReader(data[off%100:]))
		if !errors.Is(err, upload.ErrOffset) || got.Offset != 40 {
			t.Errorf("Append at %d = %+v, %v; want ErrOffset with offset 40", off, got, err)
		}
	}
	if _, err := s.Append(t.Context(), upload.NewID(), 0, bytes.NewReader(nil)); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("Append to an unknown session = %v, want ErrNotFound", err)
	}
	appendOK(t, s, sess.ID, 40, data[40:])
	if !bytes.Equal(staged(t, s, sess.ID), data) {
		t.Error("staged bytes differ")
	}
}

func testPastSize(t *testing.T, open func() upload.Staging) {
	s := open()
	data := Data(3, 100)
	sess := create(t, s, 100, "")
	appendOK(t, s, sess.ID, 0, data[:60])
	got, err := s.Append(t.Context(), sess.ID, 60, bytes.NewReader(append(data[60:], "extra"...)))
	if !errors.Is(err, upload.ErrPastSize) {
		t.Fatalf("Append past Size = %+v, %v; want ErrPastSize", got, err)
	}
	// The bytes up to Size count; the extra ones do not.
	if got, _ := s.Get(t.Context(), sess.ID); got.Offset != 100 || got.Digest != resource.IDOf(data) {
		t.Fatalf("after a body past Size: %+v", got)
	}
	if _, err := s.Append(t.Context(), sess.ID, 100, bytes.NewReader([]byte("x"))); !errors.Is(err, upload.ErrPastSize) {
		t.Errorf("Append to a full session = %v, want ErrPastSize", err)
	}
	if !bytes.Equal(staged(t, s, sess.ID), data) {
		t.Error("staged bytes differ")
	}
}

// failing yields b and then fails, like a dropped connection.
type failing struct {
	b   []byte
	err error
}

func (f *failing) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		return 0, f.err
	}
	n := copy(p, f.b)
	f.b = f.b[n:]
	return n, nil
}

func testDroppedReader(t *testing.T, open func() upload.Staging) {
	s := open()
	data := Data(4, 700000)
	sess := create(t, s, int64(len(data)), "")
	drop := errors.New("connection reset")
	got, err := s.Append(t.Context(), sess.ID, 0, &failing{b: data[:333333], err: drop})
	if !errors.Is(err, drop) || got.Offset != 333333 {
		t.Fatalf("Append of a dropped reader = %+v, %v; want the reader's error with offset 333333", got, err)
	}
	if got, _ := s.Get(t.Context(), sess.ID); got.Offset != 333333 {
		t.Fatalf("Get after the drop: offset %d, want 333333", got.Offset)
	}
	last := appendOK(t, s, sess.ID, 333333, data[333333:])
	if last.Digest != resource.IDOf(data) || !bytes.Equal(staged(t, s, sess.ID), data) {
		t.Error("resumed upload differs from the data")
	}
}

func testRestart(t *testing.T, open func() upload.Staging) {
	data := Data(5, 300000)
	s := open()
	sess := create(t, s, int64(len(data)), resource.IDOf(data))
	appendOK(t, s, sess.ID, 0, data[:123457])
	s = open() // a restarted server
	got, err := s.Get(t.Context(), sess.ID)
	if err != nil || got.Offset != 123457 || got.Want != resource.IDOf(data) {
		t.Fatalf("Get after reopening = %+v, %v", got, err)
	}
	appendOK(t, s, sess.ID, 123457, data[123457:200000])
	s = open()
	last := appendOK(t, s, sess.ID, 200000, data[200000:])
	if last.Digest != resource.IDOf(data) || !bytes.Equal(staged(t, s, sess.ID), data) {
		t.Error("upload across restarts differs from the data")
	}
}

func testComplete(t *testing.T, open func() upload.Staging) {
	s := open()
	data := Data(6, 1000)
	sess := create(t, s, 1000, "")
	appendOK(t, s, sess.ID, 0, data[:10])
	if _, err := s.Complete(t.Context(), sess.ID, resource.IDOf(data)); err == nil {
		t.Error("Complete of a session that is not full succeeded")
	}
	appendOK(t, s, sess.ID, 10, data[10:])
	for range 2 { // completing again is not an error
		got, err := s.Complete(t.Context(), sess.ID, resource.IDOf(data))
		if err != nil || got.ContentID != resource.IDOf(data) {
			t.Fatalf("Complete = %+v, %v", got, err)
		}
	}
	s = open()
	got, err := s.Get(t.Context(), sess.ID)
	if err != nil || got.ContentID != resource.IDOf(data) || got.Offset != 1000 {
		t.Fatalf("Get of a completed session = %+v, %v", got, err)
	}
	if _, err := s.Open(t.Context(), sess.ID); err == nil {
		t.Error("Open of a completed session succeeded: its bytes should be freed")
	}
	appendOK(t, s, sess.ID, 1000, nil)
	if _, err := s.Append(t.Context(), sess.ID, 1000, bytes.NewReader([]byte("x"))); !errors.Is(err, upload.ErrPastSize) {
		t.Errorf("Append to a completed session = %v, want ErrPastSize", err)
	}
}

func testDelete(t *testing.T, open func() upload.Staging) {
	s := open()
	sess := create(t, s, 10, "")
	appendOK(t, s, sess.ID, 0, []byte("01234"))
	for range 2 {
		if err := s.Delete(t.Context(), sess.ID); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if _, err := s.Get(t.Context(), sess.ID); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if _, err := s.Append(t.Context(), sess.ID, 5, bytes.NewReader([]byte("x"))); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("Append after Delete = %v, want ErrNotFound", err)
	}
}

func testExpire(t *testing.T, open func() upload.Staging) {
	s := open()
	ctx := t.Context()
	old := upload.Session{ID: upload.NewID(), Size: 5, Created: now, Expires: now.Add(time.Minute)}
	young := upload.Session{ID: upload.NewID(), Size: 5, Created: now, Expires: now.Add(time.Hour)}
	for _, sess := range []upload.Session{old, young} {
		if err := s.Create(ctx, sess); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Expire(ctx, now.Add(30*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("Expire = %d, %v; want 1", n, err)
	}
	if _, err := s.Get(ctx, old.ID); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("expired session: Get = %v", err)
	}
	if _, err := s.Get(ctx, young.ID); err != nil {
		t.Errorf("live session: Get = %v", err)
	}
}

func testConcurrent(t *testing.T, open func() upload.Staging) {
	s := open()
	data := Data(7, 64000)
	sess := create(t, s, int64(len(data)), "")
	// Eight writers race for the same offsets: exactly one wins each
	// chunk, the others see ErrOffset.
	const chunk = 8000
	for off := 0; off < len(data); off += chunk {
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Append(context.Background(), sess.ID, int64(off), bytes.NewReader(data[off:off+chunk]))
				if err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				} else if !errors.Is(err, upload.ErrOffset) {
					t.Errorf("Append: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("chunk at %d: %d writers won", off, wins)
		}
	}
	if !bytes.Equal(staged(t, s, sess.ID), data) {
		t.Error("staged bytes differ")
	}
}

func testBadIDs(t *testing.T, open func() upload.Staging) {
	s := open()
	for _, id := range []string{"", "../../etc/passwd", "u" + "aaaaaaaaaaaaaaaaaaaaaaa/", "U" + "aaaaaaaaaaaaaaaaaaaaaaaa"} {
		if _, err := s.Get(t.Context(), id); !errors.Is(err, upload.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
		if err := s.Create(t.Context(), upload.Session{ID: id, Size: 1}); err == nil {
			t.Errorf("Create(%q) succeeded", id)
		}
	}
	if err := s.Create(t.Context(), upload.Session{ID: upload.NewID(), Size: -1}); err == nil {
		t.Error("Create with a negative size succeeded")
	}
}
