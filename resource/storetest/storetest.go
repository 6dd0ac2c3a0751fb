// Package storetest is the conformance suite of resource.Store: every
// implementation runs it, so that a handler written against one store works on
// all of them.
//
//	func TestConformance(t *testing.T) {
//		storetest.Test(t, func(t *testing.T) resource.Store { return newTestStore(t) })
//	}
//
// The damage cases need to damage the store's own copy of a resource: the
// store given to Test must implement Corrupter (a wrapper in the
// implementation's test files will do, as fsstore's does).
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/pullmail/pullmail/resource"
)

// ChunkSize is the chunk size the suite probes boundaries around (fsstore's
// encryption chunk); sizes around it and its multiples are tried everywhere.
const ChunkSize = 64 << 10

// Test runs the suite. newStore must return a new, empty store for each call;
// it owns the cleanup (t.Cleanup).
func Test(t *testing.T, newStore func(t *testing.T) resource.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, resource.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Empty", testEmpty},
		{"Idempotent", testIdempotent},
		{"ConcurrentIdentical", testConcurrentIdentical},
		{"Mismatch", testMismatch},
		{"BadWant", testBadWant},
		{"Limit", testLimit},
		{"ReaderError", testReaderError},
		{"ContextCancel", testContextCancel},
		{"SeekRange", testSeekRange},
		{"ReadAt", testReadAt},
		{"Remove", testRemove},
		{"Enumerate", testEnumerate},
		{"Missing", testMissing},
		{"BadID", testBadID},
		{"Damage", testDamage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

// Corrupter damages a store's own copy of a resource, for the damage cases.
type Corrupter interface {
	// Corrupt changes what the store keeps for the plain byte at offset
	// off of the resource (the byte itself, or its ciphertext), as a
	// failing disk would, so that the copy no longer matches its ID.
	Corrupt(t *testing.T, id resource.ID, off int64)
}

// Data returns n deterministic pseudo-random bytes, different for each seed.
func Data(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Sizes are the resource sizes the suite stores: tiny, around chunk
// boundaries, and a few chunks.
var Sizes = []int{0, 1, 100, ChunkSize - 1, ChunkSize, ChunkSize + 1, 2 * ChunkSize, 3*ChunkSize + 123}

func put(t *testing.T, s resource.Store, data []byte) resource.Info {
	t.Helper()
	info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
	if err != nil {
		t.Fatalf("Put(%d bytes): %v", len(data), err)
	}
	return info
}

func readAll(t *testing.T, s resource.Store, id resource.ID) []byte {
	t.Helper()
	o, err := s.Open(t.Context(), id)
	if err != nil {
		t.Fatalf("Open(%s): %v", id, err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("reading %s: %v", id, err)
	}
	return b
}

// checkEmpty checks that id is not stored and that the store holds nothing.
func checkEmpty(t *testing.T, s resource.Store, id resource.ID) {
	t.Helper()
	if id != "" {
		if _, err := s.Stat(t.Context(), id); !errors.Is(err, resource.ErrNotFound) {
			t.Errorf("Stat(%s) after a failed Put: %v, want ErrNotFound", id, err)
		}
	}
	if got := list(t, s); len(got) != 0 {
		t.Errorf("Enumerate after a failed Put: %v, want nothing", got)
	}
}

func list(t *testing.T, s resource.Store) []resource.Info {
	t.Helper()
	var got []resource.Info
	if err := s.Enumerate(t.Context(), func(i resource.Info) error {
		got = append(got, i)
		return nil
	}); err != nil {
		t.Fatalf("Enumerate: %v", err)
	}
	slices.SortFunc(got, func(a, b resource.Info) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return got
}

func testRoundTrip(t *testing.T, s resource.Store) {
	for i, n := range Sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			data := Data(uint64(i), n)
			want := resource.IDOf(data)
			before := time.Now().Add(-2 * time.Second)
			info, err := s.Put(t.Context(), bytes.NewReader(data),
				resource.PutOptions{Want: want, Size: int64(n), Limit: int64(n) + 1})
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if info.ID != want || info.Size != int64(n) {
				t.Errorf("Put = %s, %d; want %s, %d", info.ID, info.Size, want, n)
			}
			if info.Created.Before(before) || info.Created.After(time.Now().Add(2*time.Second)) {
				t.Errorf("Put: Created = %v, not about now", info.Created)
			}
			st, err := s.Stat(t.Context(), want)
			if err != nil || st.ID != info.ID || st.Size != info.Size || !st.Created.Equal(info.Created) {
				t.Errorf("Stat = %+v, %v; want %+v", st, err, info)
			}
			o, err := s.Open(t.Context(), want)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if oi := o.Info(); oi.ID != want || oi.Size != int64(n) {
				t.Errorf("Object.Info = %+v", oi)
			}
			got, err := io.ReadAll(iotest.OneByteReader(io.LimitReader(o, 10)))
			if err != nil {
				t.Fatalf("reading the start bytewise: %v", err)
			}
			rest, err := io.ReadAll(o)
			if err != nil {
				t.Fatalf("reading: %v", err)
			}
			if got = append(got, rest...); !bytes.Equal(got, data) {
				t.Errorf("read %d bytes, not the %d put", len(got), n)
			}
			if k, err := o.Read(make([]byte, 1)); k != 0 || err != io.EOF {
				t.Errorf("Read at the end = %d, %v; want 0, EOF", k, err)
			}
			if err := o.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	// The iotest checks: small reads and seeks across chunks; then ReadAt
	// too (in small reads, which may cost a chunk each: so a small object).
	for _, tt := range []struct {
		n      int
		hideAt bool
	}{{2*ChunkSize + 7, true}, {1000, false}} {
		data := Data(99, tt.n)
		info := put(t, s, data)
		o, err := s.Open(t.Context(), info.ID)
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = o
		if tt.hideAt {
			r = struct{ io.ReadSeeker }{o}
		}
		if err := iotest.TestReader(r, data); err != nil {
			t.Errorf("iotest.TestReader(%d bytes): %v", tt.n, err)
		}
		o.Close()
	}
}

func testEmpty(t *testing.T, s resource.Store) {
	info, err := s.Put(t.Context(), bytes.NewReader(nil), resource.PutOptions{Size: 0, Want: resource.EmptyID})
	if err != nil {
		t.Fatalf("Put(empty): %v", err)
	}
	if info.ID != resource.EmptyID || info.Size != 0 {
		t.Errorf("Put(empty) = %+v, want %s size 0", info, resource.EmptyID)
	}
	if b := readAll(t, s, resource.EmptyID); len(b) != 0 {
		t.Errorf("empty resource reads %d bytes", len(b))
	}
	if got := list(t, s); len(got) != 1 || got[0].ID != resource.EmptyID || got[0].Size != 0 {
		t.Errorf("Enumerate = %+v, want the empty resource", got)
	}
}

func testIdempotent(t *testing.T, s resource.Store) {
	data := Data(1, 1000)
	first := put(t, s, data)
	second, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Want: first.ID, Size: 1000})
	if err != nil {
		t.Fatalf("second Put: %v", err)
	}
	if second.ID != first.ID || second.Size != first.Size {
		t.Errorf("second Put = %+v, want %+v", second, first)
	}
	if second.Created.Before(first.Created) {
		t.Errorf("second Put: Created %v went back from %v", second.Created, first.Created)
	}
	if got := list(t, s); len(got) != 1 {
		t.Errorf("Enumerate after two identical Puts: %d resources", len(got))
	}
	if !bytes.Equal(readAll(t, s, first.ID), data) {
		t.Error("bytes changed after a second Put")
	}
	// A second Put that lies is refused even though the ID is stored.
	_, err = s.Put(t.Context(), bytes.NewReader(Data(2, 1000)), resource.PutOptions{Want: first.ID, Size: -1})
	if !errors.Is(err, resource.ErrMismatch) {
		t.Errorf("Put of other bytes under a stored ID: %v, want ErrMismatch", err)
	}
	if !bytes.Equal(readAll(t, s, first.ID), data) {
		t.Error("bytes changed after a refused Put")
	}
}

func testConcurrentIdentical(t *testing.T, s resource.Store) {
	data := Data(3, 3*ChunkSize+5)
	want := resource.IDOf(data)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	infos := make([]resource.Info, n)
	for i := range n {
		wg.Go(func() {
			// Small reads interleave the uploads.
			r := iotest.HalfReader(bytes.NewReader(data))
			infos[i], errs[i] = s.Put(t.Context(), r, resource.PutOptions{Want: want, Size: int64(len(data))})
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Put %d: %v", i, errs[i])
		} else if infos[i].ID != want || infos[i].Size != int64(len(data)) {
			t.Errorf("Put %d = %+v", i, infos[i])
		}
	}
	if got := list(t, s); len(got) != 1 || got[0].ID != want {
		t.Errorf("Enumerate = %+v, want one resource", got)
	}
	if !bytes.Equal(readAll(t, s, want), data) {
		t.Error("bytes differ after concurrent Puts")
	}
}

// PutRemoveRace runs Puts of the same bytes racing Removes of them, as an
// upload racing garbage collection does, on a new store. A Put never fails
// for it (it reports what it stored, even if a Remove took it at once: the
// collector's protocol in package meta has the writer find out), a Remove
// never fails, and a Put after the last Remove leaves the bytes whole.
// (With or without a declared digest: the two ways a store writes.)
//
// It is not part of Test: the S3 store's test server, versitygw on a POSIX
// directory, fails a PUT that races a DELETE of the same key ("Existing
// Object is a directory"), which S3 itself does not; the other stores run
// it beside Test.
func PutRemoveRace(t *testing.T, newStore func(t *testing.T) resource.Store) {
	t.Helper()
	putRemoveRace(t, newStore(t))
}

func putRemoveRace(t *testing.T, s resource.Store) {
	data := Data(13, 2*ChunkSize+7)
	want := resource.IDOf(data)
	const putters, removers, rounds = 4, 2, 20
	var wg, rwg sync.WaitGroup
	done := make(chan struct{})
	for i := range putters {
		wg.Go(func() {
			for r := range rounds {
				opt := resource.PutOptions{Size: int64(len(data))}
				if (i+r)%2 == 0 {
					opt.Want = want
				}
				info, err := s.Put(t.Context(), iotest.HalfReader(bytes.NewReader(data)), opt)
				if err != nil || info.ID != want || info.Size != int64(len(data)) {
					t.Errorf("Put racing Remove = %+v, %v", info, err)
					return
				}
			}
		})
	}
	for range removers {
		rwg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := s.Remove(t.Context(), want); err != nil {
					t.Errorf("Remove racing Put: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	rwg.Wait()
	if _, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Want: want, Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, s, want), data) {
		t.Error("bytes differ after Puts raced Removes")
	}
}

func testMismatch(t *testing.T, s resource.Store) {
	data := Data(4, 2*ChunkSize+1)
	id := resource.IDOf(data)
	n := int64(len(data))
	tests := []struct {
		name string
		opt  resource.PutOptions
	}{
		{"digest", resource.PutOptions{Want: resource.IDOf([]byte("x")), Size: -1}},
		{"digest of empty", resource.PutOptions{Want: resource.EmptyID, Size: -1}},
		{"size short", resource.PutOptions{Want: id, Size: n + 1}},
		{"size long", resource.PutOptions{Want: id, Size: n - 1}},
		{"size zero", resource.PutOptions{Size: 0}},
		{"size only", resource.PutOptions{Size: n + ChunkSize}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Put(t.Context(), bytes.NewReader(data), tt.opt)
			if !errors.Is(err, resource.ErrMismatch) {
				t.Fatalf("Put: %v, want ErrMismatch", err)
			}
			checkEmpty(t, s, id)
		})
	}
}

func testBadWant(t *testing.T, s resource.Store) {
	for _, want := range []resource.ID{"../../etc/passwd", resource.EmptyID + "=", "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFV"} {
		_, err := s.Put(t.Context(), bytes.NewReader(nil), resource.PutOptions{Want: want, Size: -1})
		if !errors.Is(err, resource.ErrBadID) {
			t.Errorf("Put(Want %q): %v, want ErrBadID", want, err)
		}
	}
	checkEmpty(t, s, resource.EmptyID)
}

func testLimit(t *testing.T, s resource.Store) {
	data := Data(5, ChunkSize+10)
	n := int64(len(data))
	for _, lim := range []int64{1, ChunkSize, n - 1} {
		_, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1, Limit: lim})
		if !errors.Is(err, resource.ErrTooLarge) {
			t.Errorf("Put with Limit %d: %v, want ErrTooLarge", lim, err)
		}
	}
	checkEmpty(t, s, resource.IDOf(data))
	// An endless stream fails as soon as it passes the limit.
	_, err := s.Put(t.Context(), endless{}, resource.PutOptions{Size: -1, Limit: 3 * ChunkSize})
	if !errors.Is(err, resource.ErrTooLarge) {
		t.Errorf("Put of an endless stream: %v, want ErrTooLarge", err)
	}
	checkEmpty(t, s, "")
	if info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1, Limit: n}); err != nil || info.Size != n {
		t.Errorf("Put at exactly the limit = %+v, %v", info, err)
	}
}

func testReaderError(t *testing.T, s resource.Store) {
	boom := errors.New("connection reset")
	data := Data(6, 2*ChunkSize+3)
	for _, cut := range []int{0, 1, ChunkSize, 2 * ChunkSize} {
		r := io.MultiReader(bytes.NewReader(data[:cut]), iotest.ErrReader(boom))
		_, err := s.Put(t.Context(), r, resource.PutOptions{Size: -1})
		if !errors.Is(err, boom) {
			t.Errorf("Put failing after %d bytes: %v, want the reader's error", cut, err)
		}
		// A truncated upload of a declared size is a mismatch.
		_, err = s.Put(t.Context(), bytes.NewReader(data[:cut]), resource.PutOptions{Size: int64(len(data))})
		if !errors.Is(err, resource.ErrMismatch) {
			t.Errorf("Put truncated at %d bytes: %v, want ErrMismatch", cut, err)
		}
	}
	checkEmpty(t, s, resource.IDOf(data))
}

func testContextCancel(t *testing.T, s resource.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Put(ctx, bytes.NewReader([]byte("x")), resource.PutOptions{Size: -1})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context: %v, want context.Canceled", err)
	}
	// Cancelled mid-stream, by the reader itself.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	r := &cancelling{r: endless{}, after: 2 * ChunkSize, cancel: cancel}
	_, err = s.Put(ctx, r, resource.PutOptions{Size: -1})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Put cancelled mid-stream: %v, want context.Canceled", err)
	}
	// Cancelled after the last byte was read but before the commit.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	data := Data(7, 100)
	r = &cancelling{r: bytes.NewReader(data), after: len(data), cancel: cancel}
	if _, err := s.Put(ctx, r, resource.PutOptions{Size: -1}); err == nil {
		// Committing is allowed if the store was already past its last
		// check: then the resource must be whole.
		if !bytes.Equal(readAll(t, s, resource.IDOf(data)), data) {
			t.Error("resource committed after cancellation is not whole")
		}
		return
	} else if !errors.Is(err, context.Canceled) {
		t.Errorf("Put cancelled at the end: %v, want context.Canceled", err)
	}
	checkEmpty(t, s, resource.IDOf(data))
}

func testSeekRange(t *testing.T, s resource.Store) {
	data := Data(8, 3*ChunkSize+123)
	size := int64(len(data))
	info := put(t, s, data)
	o, err := s.Open(t.Context(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	offsets := []int64{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 2*ChunkSize - 3, 3 * ChunkSize, size - 1, size}
	lengths := []int64{0, 1, 5, ChunkSize, ChunkSize + 2, size}
	for _, off := range offsets {
		for _, n := range lengths {
			pos, err := o.Seek(off, io.SeekStart)
			if err != nil || pos != off {
				t.Fatalf("Seek(%d, Start) = %d, %v", off, pos, err)
			}
			want := data[off:min(off+n, size)]
			got := make([]byte, len(want))
			if _, err := io.ReadFull(o, got); err != nil {
				t.Fatalf("reading %d bytes at %d: %v", len(want), off, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%d bytes at %d differ", len(want), off)
			}
		}
	}
	// Relative seeks, as http.ServeContent does them.
	steps := []struct {
		offset int64
		whence int
		want   int64
	}{
		{0, io.SeekEnd, size},
		{0, io.SeekStart, 0},
		{-10, io.SeekEnd, size - 10},
		{-ChunkSize, io.SeekCurrent, size - 10 - ChunkSize},
		{ChunkSize + 3, io.SeekCurrent, size - 7},
		{0, io.SeekCurrent, size - 7},
	}
	for _, st := range steps {
		pos, err := o.Seek(st.offset, st.whence)
		if err != nil || pos != st.want {
			t.Fatalf("Seek(%d, %d) = %d, %v; want %d", st.offset, st.whence, pos, err, st.want)
		}
	}
	rest, err := io.ReadAll(o)
	if err != nil || !bytes.Equal(rest, data[size-7:]) {
		t.Errorf("reading the last 7 bytes: %q, %v", rest, err)
	}
	// Past the end: Seek succeeds, Read says EOF.
	if _, err := o.Seek(size+100, io.SeekStart); err != nil {
		t.Errorf("Seek past the end: %v", err)
	}
	if n, err := o.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Errorf("Read past the end = %d, %v; want 0, EOF", n, err)
	}
	if _, err := o.Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek to a negative position succeeded")
	}
	// After seeking back to 0, a full read works (and checks).
	if _, err := o.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if all, err := io.ReadAll(o); err != nil || !bytes.Equal(all, data) {
		t.Errorf("full read after seeks: %d bytes, %v", len(all), err)
	}
}

func testReadAt(t *testing.T, s resource.Store) {
	data := Data(9, 2*ChunkSize+77)
	size := int64(len(data))
	info := put(t, s, data)
	o, err := s.Open(t.Context(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ra, ok := o.(io.ReaderAt)
	if !ok {
		t.Skip("Object does not implement io.ReaderAt")
	}
	var wg sync.WaitGroup
	for _, off := range []int64{0, 7, ChunkSize - 1, ChunkSize, 2 * ChunkSize, size - 1} {
		wg.Go(func() {
			want := data[off:min(off+ChunkSize+3, size)]
			got := make([]byte, len(want))
			n, err := ra.ReadAt(got, off)
			if n != len(want) || err != nil && err != io.EOF || !bytes.Equal(got, want) {
				t.Errorf("ReadAt(%d bytes, %d) = %d, %v", len(want), off, n, err)
			}
		})
	}
	wg.Wait()
	if n, err := ra.ReadAt(make([]byte, 10), size-3); n != 3 || err != io.EOF {
		t.Errorf("ReadAt across the end = %d, %v; want 3, EOF", n, err)
	}
	// ReadAt leaves the Read position alone.
	if all, err := io.ReadAll(o); err != nil || !bytes.Equal(all, data) {
		t.Errorf("Read after ReadAt: %d bytes, %v", len(all), err)
	}
}

func testRemove(t *testing.T, s resource.Store) {
	keep := put(t, s, Data(10, 10))
	info := put(t, s, Data(11, ChunkSize+1))
	if err := s.Remove(t.Context(), info.ID); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := s.Stat(t.Context(), info.ID); !errors.Is(err, resource.ErrNotFound) {
		t.Errorf("Stat after Remove: %v, want ErrNotFound", err)
	}
	if _, err := s.Open(t.Context(), info.ID); !errors.Is(err, resource.ErrNotFound) {
		t.Errorf("Open after Remove: %v, want ErrNotFound", err)
	}
	if err := s.Remove(t.Context(), info.ID); err != nil {
		t.Errorf("Remove of a missing resource: %v", err)
	}
	if got := list(t, s); len(got) != 1 || got[0].ID != keep.ID {
		t.Errorf("Enumerate after Remove = %+v, want only %s", got, keep.ID)
	}
	// It can be stored again.
	if again := put(t, s, Data(11, ChunkSize+1)); again.ID != info.ID {
		t.Errorf("Put after Remove = %s, want %s", again.ID, info.ID)
	}
}

func testEnumerate(t *testing.T, s resource.Store) {
	if got := list(t, s); len(got) != 0 {
		t.Fatalf("new store enumerates %+v", got)
	}
	var want []resource.Info
	for i, n := range Sizes {
		want = append(want, put(t, s, Data(uint64(100+i), n)))
	}
	slices.SortFunc(want, func(a, b resource.Info) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	got := list(t, s)
	if len(got) != len(want) {
		t.Fatalf("Enumerate: %d resources, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID || got[i].Size != want[i].Size || !got[i].Created.Equal(want[i].Created) {
			t.Errorf("Enumerate[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := s.Enumerate(t.Context(), func(resource.Info) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Enumerate with fn failing: %v after %d calls; want stop after 1", err, calls)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Enumerate(ctx, func(resource.Info) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Enumerate with a cancelled context: %v, want context.Canceled", err)
	}
}

func testMissing(t *testing.T, s resource.Store) {
	put(t, s, Data(12, 10))
	for _, id := range []resource.ID{resource.EmptyID, resource.IDOf([]byte("never stored"))} {
		if _, err := s.Stat(t.Context(), id); !errors.Is(err, resource.ErrNotFound) {
			t.Errorf("Stat(%s): %v, want ErrNotFound", id, err)
		}
		if o, err := s.Open(t.Context(), id); !errors.Is(err, resource.ErrNotFound) {
			t.Errorf("Open(%s): %v, want ErrNotFound", id, err)
			if o != nil {
				o.Close()
			}
		}
		if err := s.Remove(t.Context(), id); err != nil {
			t.Errorf("Remove(%s): %v", id, err)
		}
	}
}

// BadIDs are IDs that no method may accept (they must fail with ErrBadID).
var BadIDs = []resource.ID{
	"",
	"..",
	"../../../../../../../../../../../etc/passwd",
	"..%2F....%2F....%2F....%2F....%2F....%2F...",
	"%2e%2e%2e%2e%2e%2e%2e%2e%2e%2e%2e%2e%2e%2e%",
	"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=",
	"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
	"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFV",
	"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuF",
	"47DEQpj8HBSa-_TImW-5\x00CeuQeRkm5NMpJWZG3hSuFU",
	"47DEQpj8HBSa-_TImW-5\nCeuQeRkm5NMpJWZG3hSuFU",
	"<47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU>",
}

func testBadID(t *testing.T, s resource.Store) {
	put(t, s, nil)
	for _, id := range BadIDs {
		if _, err := s.Stat(t.Context(), id); !errors.Is(err, resource.ErrBadID) {
			t.Errorf("Stat(%q): %v, want ErrBadID", id, err)
		}
		if o, err := s.Open(t.Context(), id); !errors.Is(err, resource.ErrBadID) {
			t.Errorf("Open(%q): %v, want ErrBadID", id, err)
			if o != nil {
				o.Close()
			}
		}
		if err := s.Remove(t.Context(), id); !errors.Is(err, resource.ErrBadID) {
			t.Errorf("Remove(%q): %v, want ErrBadID", id, err)
		}
	}
	if got := list(t, s); len(got) != 1 {
		t.Errorf("Enumerate after bad IDs: %+v", got)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i)
	}
	return len(p), nil
}

// cancelling calls cancel once after bytes have passed.
type cancelling struct {
	r      io.Reader
	after  int
	cancel func()
}

func (c *cancelling) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.after -= n
	if c.after <= 0 {
		c.cancel()
	}
	return n, err
}

// testDamage checks that no damaged byte leaves the store (docs/PROTOCOL.md
// §Content-ID; resource.Object): a store checks what it returns in chunks of
// at most ChunkSize, fails the read that reaches a damaged one with
// resource.ErrDamaged before returning any byte of it, keeps serving the
// intact chunks, and is repaired by a Put of the right bytes.
func testDamage(t *testing.T, s resource.Store) {
	c, ok := s.(Corrupter)
	if !ok {
		t.Fatalf("%T does not implement storetest.Corrupter: the damage cases cannot run", s)
	}
	big := 3*ChunkSize + 123
	tests := []struct {
		name      string
		size, off int
	}{
		{"small", 100, 50},
		{"one chunk, last byte", ChunkSize, ChunkSize - 1},
		{"first chunk", big, 7},
		{"middle chunk", big, ChunkSize + 5},
		{"last chunk", big, 3*ChunkSize + 100},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := Data(uint64(200+i), tt.size)
			info := put(t, s, data)
			c.Corrupt(t, info.ID, int64(tt.off))

			o, err := s.Open(t.Context(), info.ID)
			if err != nil {
				t.Fatalf("Open of a copy with one damaged byte: %v (its intact parts must stay readable)", err)
			}
			defer o.Close()
			// A whole read, as a download: it stops before the damage.
			got, err := io.ReadAll(o)
			if !errors.Is(err, resource.ErrDamaged) {
				t.Errorf("whole read: %v, want ErrDamaged", err)
			}
			if len(got) > tt.off || !bytes.Equal(got, data[:len(got)]) {
				t.Errorf("whole read delivered %d bytes before failing; the damaged byte is at %d", len(got), tt.off)
			}
			// A Range read across the damaged byte.
			from := max(tt.off-2, 0)
			if _, err := o.Seek(int64(from), io.SeekStart); err != nil {
				t.Fatal(err)
			}
			n, err := io.ReadFull(o, make([]byte, min(10, tt.size-from)))
			if !errors.Is(err, resource.ErrDamaged) || n > tt.off-from {
				t.Errorf("Range read at %d = %d bytes, %v; want ErrDamaged before byte %d", from, n, err, tt.off)
			}
			if ra, ok := o.(io.ReaderAt); ok {
				n, err := ra.ReadAt(make([]byte, 10), int64(from))
				if !errors.Is(err, resource.ErrDamaged) || n > tt.off-from {
					t.Errorf("ReadAt(%d) = %d bytes, %v; want ErrDamaged before byte %d", from, n, err, tt.off)
				}
			}
			// A Range read of an intact chunk still works.
			if tt.size > ChunkSize {
				intact := 0
				if tt.off < ChunkSize {
					intact = 2 * ChunkSize
				}
				want := data[intact:min(intact+ChunkSize, tt.size)]
				if _, err := o.Seek(int64(intact), io.SeekStart); err != nil {
					t.Fatal(err)
				}
				b := make([]byte, len(want))
				if _, err := io.ReadFull(o, b); err != nil || !bytes.Equal(b, want) {
					t.Errorf("Range read of the intact chunk at %d: %v", intact, err)
				}
			}
			if _, err := resource.Check(t.Context(), s, info.ID); !errors.Is(err, resource.ErrDamaged) {
				t.Errorf("Check of the damaged copy: %v, want ErrDamaged", err)
			}
			// The damaged copy is still listed (so that fsck finds it).
			found := false
			for _, i := range list(t, s) {
				found = found || i.ID == info.ID
			}
			if !found {
				t.Error("Enumerate no longer lists the damaged copy")
			}

			// A Put of the right bytes repairs it.
			again, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Want: info.ID, Size: int64(tt.size)})
			if err != nil || again.ID != info.ID {
				t.Fatalf("Put of the right bytes over a damaged copy = %+v, %v", again, err)
			}
			if _, err := resource.Check(t.Context(), s, info.ID); err != nil {
				t.Errorf("Check after the repairing Put: %v", err)
			}
			if b := readAll(t, s, info.ID); !bytes.Equal(b, data) {
				t.Error("the repaired copy reads other bytes")
			}
		})
	}
	// A damaged copy can be removed, and stored again.
	data := Data(250, 2*ChunkSize)
	info := put(t, s, data)
	c.Corrupt(t, info.ID, ChunkSize)
	if err := s.Remove(t.Context(), info.ID); err != nil {
		t.Fatalf("Remove of a damaged copy: %v", err)
	}
	if _, err := s.Stat(t.Context(), info.ID); !errors.Is(err, resource.ErrNotFound) {
		t.Errorf("Stat after removing a damaged copy: %v, want ErrNotFound", err)
	}
	put(t, s, data)
	if _, err := resource.Check(t.Context(), s, info.ID); err != nil {
		t.Errorf("Check of the copy stored again: %v", err)
	}
}
