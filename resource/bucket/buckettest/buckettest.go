// Package buckettest is the conformance suite of bucket.Bucket: memory, a
// directory (resource/fsstore) and S3 (resource/s3store) run it, so that the
// stores above a bucket (resource/blobstore, resource/sealed) can rely on
// what bucket.Writer.Commit promises whatever the backend.
package buckettest

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/pullmail/pullmail/resource/bucket"
	"github.com/pullmail/pullmail/resource/storetest"
)

// Options tune the suite to a backend.
type Options struct {
	// Big is the size of the large object, past the backend's first
	// buffer or part (S3: a multipart upload); default 1 MiB.
	Big int
}

// Test runs the suite. newBucket must return a new, empty bucket for each
// call; it owns the cleanup.
func Test(t *testing.T, newBucket func(t *testing.T) bucket.Bucket, opt Options) {
	if opt.Big == 0 {
		opt.Big = 1 << 20
	}
	tests := []struct {
		name string
		fn   func(*testing.T, bucket.Bucket, Options)
	}{
		{"CommitRead", testCommitRead},
		{"Invisible", testInvisible},
		{"Replace", testReplace},
		{"Patch", testPatch},
		{"DeclaredName", testDeclaredName},
		{"Delete", testDelete},
		{"List", testList},
		{"BadNames", testBadNames},
		{"Opener", testOpener},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newBucket(t), opt)
		})
	}
}

func write(t *testing.T, b bucket.Bucket, copt bucket.CreateOptions, name string, data []byte) {
	t.Helper()
	w, err := b.Create(t.Context(), copt)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer w.Abort()
	for p := data; len(p) > 0; {
		k := min(len(p), 100_000) // several writes, not on any boundary
		if _, err := w.Write(p[:k]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		p = p[k:]
	}
	if err := w.Commit(t.Context(), name); err != nil {
		t.Fatalf("Commit(%s): %v", name, err)
	}
}

func read(t *testing.T, b bucket.Bucket, name string, off, n int64) []byte {
	t.Helper()
	r, err := b.Read(t.Context(), name, off, n)
	if err != nil {
		t.Fatalf("Read(%s, %d, %d): %v", name, off, n, err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("Read(%s, %d, %d): %v", name, off, n, err)
	}
	return got
}

func missing(t *testing.T, b bucket.Bucket, name string) {
	t.Helper()
	if _, err := b.Stat(t.Context(), name); !errors.Is(err, bucket.ErrNotExist) {
		t.Errorf("Stat(%s): %v, want ErrNotExist", name, err)
	}
	if r, err := b.Read(t.Context(), name, 0, -1); !errors.Is(err, bucket.ErrNotExist) {
		t.Errorf("Read(%s): %v, want ErrNotExist", name, err)
		if r != nil {
			r.Close()
		}
	}
}

func names(t *testing.T, b bucket.Bucket) []string {
	t.Helper()
	var got []string
	if err := b.List(t.Context(), func(name string, _ bucket.Attrs) error {
		got = append(got, name)
		return nil
	}); err != nil {
		t.Fatalf("List: %v", err)
	}
	slices.Sort(got)
	return got
}

func testCommitRead(t *testing.T, b bucket.Bucket, opt Options) {
	for i, n := range []int{0, 1, 1000, opt.Big + 7} {
		data := storetest.Data(uint64(900+i), n)
		name := "object-" + string(rune('a'+i))
		before := time.Now().Add(-2 * time.Second)
		write(t, b, bucket.CreateOptions{}, name, data)
		a, err := b.Stat(t.Context(), name)
		if err != nil || a.Size != int64(n) || a.Modified.Before(before) || a.Modified.After(time.Now().Add(2*time.Second)) {
			t.Errorf("Stat(%d bytes) = %+v, %v", n, a, err)
		}
		if got := read(t, b, name, 0, -1); !bytes.Equal(got, data) {
			t.Errorf("%d bytes written, %d read back", n, len(got))
		}
		if n == 0 {
			continue
		}
		for _, r := range [][2]int64{{0, 1}, {int64(n) - 1, 1}, {int64(n) / 3, int64(n) / 2}, {int64(n) / 2, -1}, {int64(n), 0}} {
			want := data[r[0]:]
			if r[1] >= 0 {
				want = want[:r[1]]
			}
			if got := read(t, b, name, r[0], r[1]); !bytes.Equal(got, want) {
				t.Errorf("Read(%d bytes at %d of %d) = %d bytes, not the stored ones", r[1], r[0], n, len(got))
			}
		}
	}
}

// testInvisible: nothing is visible before Commit, and Abort or a failed
// write leaves nothing.
func testInvisible(t *testing.T, b bucket.Bucket, opt Options) {
	for _, n := range []int{10, opt.Big + 7} {
		w, err := b.Create(t.Context(), bucket.CreateOptions{Name: "declared"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(storetest.Data(1, n)); err != nil {
			t.Fatal(err)
		}
		missing(t, b, "declared")
		if got := names(t, b); len(got) != 0 {
			t.Errorf("List before Commit: %v", got)
		}
		if err := w.Abort(); err != nil {
			t.Errorf("Abort: %v", err)
		}
		if err := w.Commit(t.Context(), "declared"); err == nil {
			t.Error("Commit after Abort succeeded")
		}
		missing(t, b, "declared")
	}
	if got := names(t, b); len(got) != 0 {
		t.Errorf("List after Abort: %v", got)
	}
}

func testReplace(t *testing.T, b bucket.Bucket, opt Options) {
	one, two := storetest.Data(2, opt.Big+1), storetest.Data(3, 500)
	write(t, b, bucket.CreateOptions{}, "replaced", one)
	write(t, b, bucket.CreateOptions{}, "replaced", two)
	if got := read(t, b, "replaced", 0, -1); !bytes.Equal(got, two) {
		t.Errorf("after a second Commit: %d bytes, want the second object's %d", len(got), len(two))
	}
	if got := names(t, b); !slices.Equal(got, []string{"replaced"}) {
		t.Errorf("List = %v", got)
	}
}

func testPatch(t *testing.T, b bucket.Bucket, opt Options) {
	for _, n := range []int{64, opt.Big + 9} {
		data := storetest.Data(4, n)
		w, err := b.Create(t.Context(), bucket.CreateOptions{Patch: 64})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Patch([]byte("x"), 0); err == nil {
			t.Error("Patch of bytes not written yet succeeded")
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Patch([]byte("HEADER"), 58); err != nil {
			t.Errorf("Patch in the first 64 bytes of %d: %v", n, err)
		}
		if err := w.Patch([]byte("xx"), 63); err == nil {
			t.Error("Patch across the patchable bytes succeeded")
		}
		if err := w.Commit(t.Context(), "patched"); err != nil {
			t.Fatal(err)
		}
		copy(data[58:], "HEADER")
		if got := read(t, b, "patched", 0, -1); !bytes.Equal(got, data) {
			t.Errorf("patched object of %d bytes reads other bytes", n)
		}
	}
}

// testDeclaredName: a Writer created for a name may refuse another at
// Commit, but never publishes the bytes under the declared one.
func testDeclaredName(t *testing.T, b bucket.Bucket, opt Options) {
	for _, n := range []int{10, opt.Big + 7} {
		w, err := b.Create(t.Context(), bucket.CreateOptions{Name: "declared"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(storetest.Data(5, n)); err != nil {
			t.Fatal(err)
		}
		err = w.Commit(t.Context(), "other")
		w.Abort()
		missing(t, b, "declared")
		if err == nil {
			if got := read(t, b, "other", 0, -1); len(got) != n {
				t.Errorf("committed under another name: %d bytes", len(got))
			}
		}
	}
}

func testDelete(t *testing.T, b bucket.Bucket, opt Options) {
	write(t, b, bucket.CreateOptions{}, "deleted", []byte("x"))
	write(t, b, bucket.CreateOptions{}, "kept", []byte("y"))
	for range 2 { // deleting a missing object is no error
		if err := b.Delete(t.Context(), "deleted"); err != nil {
			t.Errorf("Delete: %v", err)
		}
	}
	missing(t, b, "deleted")
	if got := names(t, b); !slices.Equal(got, []string{"kept"}) {
		t.Errorf("List after Delete = %v", got)
	}
}

func testList(t *testing.T, b bucket.Bucket, opt Options) {
	want := []string{"aaaa", "aaaa.sums", "list-1", "zz-9_.x"}
	for i, name := range want {
		write(t, b, bucket.CreateOptions{}, name, make([]byte, i))
	}
	sizes := map[string]int64{}
	if err := b.List(t.Context(), func(name string, a bucket.Attrs) error {
		sizes[name] = a.Size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, name := range want {
		if s, ok := sizes[name]; !ok || s != int64(i) {
			t.Errorf("List: %s has size %d (listed: %v), want %d", name, s, ok, i)
		}
	}
	if len(sizes) != len(want) {
		t.Errorf("List = %v, want %v", sizes, want)
	}
	stop := errors.New("stop")
	calls := 0
	if err := b.List(t.Context(), func(string, bucket.Attrs) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List with fn failing: %v after %d calls", err, calls)
	}
}

func testBadNames(t *testing.T, b bucket.Bucket, opt Options) {
	write(t, b, bucket.CreateOptions{}, "good", []byte("x"))
	for _, name := range []string{"", ".", "..", "../good", "a/b", ".hidden", "with space", "nul\x00", "é"} {
		if _, err := b.Stat(t.Context(), name); err == nil || errors.Is(err, bucket.ErrNotExist) {
			t.Errorf("Stat(%q): %v, want an invalid-name error", name, err)
		}
		if r, err := b.Read(t.Context(), name, 0, -1); err == nil {
			r.Close()
			t.Errorf("Read(%q) succeeded", name)
		}
		if err := b.Delete(t.Context(), name); err == nil {
			t.Errorf("Delete(%q) succeeded", name)
		}
		w, err := b.Create(t.Context(), bucket.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(t.Context(), name); err == nil {
			t.Errorf("Commit(%q) succeeded", name)
		}
		w.Abort()
	}
	if got := names(t, b); !slices.Equal(got, []string{"good"}) {
		t.Errorf("List after bad names = %v", got)
	}
}

func testOpener(t *testing.T, b bucket.Bucket, opt Options) {
	op, ok := b.(bucket.Opener)
	if !ok {
		t.Skipf("%T is not a bucket.Opener", b)
	}
	data := storetest.Data(6, 5000)
	write(t, b, bucket.CreateOptions{}, "opened", data)
	f, err := op.Open(t.Context(), "opened")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if a := f.Attrs(); a.Size != int64(len(data)) {
		t.Errorf("Attrs = %+v", a)
	}
	got := make([]byte, 100)
	if _, err := f.ReadAt(got, 4000); err != nil || !bytes.Equal(got, data[4000:4100]) {
		t.Errorf("ReadAt: %v", err)
	}
	if _, err := op.Open(t.Context(), "never"); !errors.Is(err, bucket.ErrNotExist) {
		t.Errorf("Open of a missing object: %v, want ErrNotExist", err)
	}
}
