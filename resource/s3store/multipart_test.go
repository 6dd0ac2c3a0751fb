package s3store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/minio/minio-go/v7"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/blobstore"
	"github.com/pullmail/pullmail/resource/bucket"
	"github.com/pullmail/pullmail/resource/s3store"
	"github.com/pullmail/pullmail/resource/s3store/s3test"
	"github.com/pullmail/pullmail/resource/storetest"
)

const part = 5 << 20 // S3's smallest part

// keys lists every key under the bucket's prefix and every multipart upload
// not completed or aborted.
func keys(t *testing.T, srv *s3test.Server) (objects, uploads []string) {
	t.Helper()
	c := srv.Client(t)
	for oi := range c.ListObjects(t.Context(), srv.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		objects = append(objects, oi.Key)
	}
	core := minio.Core{Client: c}
	res, err := core.ListMultipartUploads(t.Context(), srv.Bucket, "", "", "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range res.Uploads {
		uploads = append(uploads, u.Key)
	}
	slices.Sort(objects)
	return objects, uploads
}

// TestMultipart runs the three commit paths (one PUT, a multipart upload
// under the final key, one under a temporary key copied into place) and
// their failures, and checks that the bucket holds the resources' objects
// and nothing else: no temporary object, no upload left open.
func TestMultipart(t *testing.T) {
	srv := s3test.Start(t)
	b := srv.NewBucket(t, s3store.Options{PartSize: part})
	s := blobstore.New(b, blobstore.Options{})
	ctx := t.Context()

	var want []string
	for i, tt := range []struct {
		name    string
		size    int
		declare bool
	}{
		{"one part exactly", part, false},
		{"multipart, declared", 2*part + 7, true},
		{"multipart, undeclared", 2*part + 7, false},
		{"two parts exactly, declared", 2 * part, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := storetest.Data(uint64(300+i), tt.size)
			opt := resource.PutOptions{Size: int64(tt.size)}
			if tt.declare {
				opt.Want = resource.IDOf(data)
			}
			info, err := s.Put(ctx, bytes.NewReader(data), opt)
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if info.ID != resource.IDOf(data) || info.Size != int64(tt.size) {
				t.Fatalf("Put = %+v", info)
			}
			want = append(want, string(info.ID), string(info.ID)+".sums")
			o, err := s.Open(ctx, info.ID)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			// Small reads and seeks (ReadAt hidden: one GET each).
			if err := iotest.TestReader(struct{ io.ReadSeeker }{o}, data); err != nil {
				t.Error(err)
			}
			if tt.size <= part {
				return
			}
			// A Range across the part boundary.
			got := make([]byte, 1000)
			if _, err := o.(io.ReaderAt).ReadAt(got, part-500); err != nil || !bytes.Equal(got, data[part-500:part+500]) {
				t.Errorf("ReadAt across the part boundary: %v", err)
			}
		})
	}

	// Failures after several parts leave nothing.
	data := storetest.Data(400, 2*part+100)
	boom := errors.New("connection reset")
	for _, tt := range []struct {
		name string
		r    io.Reader
		opt  resource.PutOptions
		want error
	}{
		{"declared digest wrong", bytes.NewReader(data), resource.PutOptions{Size: -1, Want: resource.IDOf([]byte("other"))}, resource.ErrMismatch},
		{"undeclared, size wrong", bytes.NewReader(data), resource.PutOptions{Size: int64(len(data)) + 1}, resource.ErrMismatch},
		{"reader fails after two parts", io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)), resource.PutOptions{Size: -1}, boom},
		{"limit", bytes.NewReader(data), resource.PutOptions{Size: -1, Limit: 2 * part}, resource.ErrTooLarge},
	} {
		if _, err := s.Put(ctx, tt.r, tt.opt); !errors.Is(err, tt.want) {
			t.Errorf("%s: Put = %v, want %v", tt.name, err, tt.want)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	r := &cancelAfter{r: bytes.NewReader(data), n: part + 10, cancel: cancel}
	if _, err := s.Put(cctx, r, resource.PutOptions{Size: -1}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled after a part: Put = %v", err)
	}

	objects, uploads := keys(t, srv)
	var names []string
	objects = slices.DeleteFunc(objects, func(k string) bool { return k == "t1/res/fo/format" })
	for _, k := range objects {
		_, name, _ := strings.Cut(strings.TrimPrefix(k, "t1/res/"), "/")
		names = append(names, name)
		if !strings.HasPrefix(k, "t1/res/"+name[:2]+"/") {
			t.Errorf("key %s is not PREFIX/ab/NAME", k)
		}
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("bucket holds %v\nwant the objects %v", objects, want)
	}
	if len(uploads) != 0 {
		t.Errorf("multipart uploads left open: %v", uploads)
	}
}

type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

// TestPatch: a patchable writer holds its first part back, so a header
// written at the end lands in place even after parts went out.
func TestPatch(t *testing.T) {
	srv := s3test.Start(t)
	b := srv.NewBucket(t, s3store.Options{PartSize: part})
	for _, size := range []int{100, part, 3*part + 1} {
		data := storetest.Data(500, size)
		w, err := b.Create(t.Context(), bucket.CreateOptions{Patch: 64})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Patch([]byte("HEADER"), 48); err != nil {
			t.Fatalf("Patch after %d bytes: %v", size, err)
		}
		if err := w.Patch([]byte("x"), 64); err == nil {
			t.Error("Patch past the patchable bytes succeeded")
		}
		if err := w.Commit(t.Context(), "patched"); err != nil {
			t.Fatal(err)
		}
		copy(data[48:], "HEADER")
		r, err := b.Read(t.Context(), "patched", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%d bytes patched: read %d bytes back, %v", size, len(got), err)
		}
	}
}

func TestParseURL(t *testing.T) {
	for _, tt := range []struct {
		url  string
		want s3store.Config
		err  string
	}{
		{"s3://b/p/q?endpoint=http://127.0.0.1:9000&region=r", s3store.Config{Bucket: "b", Prefix: "p/q", Endpoint: "127.0.0.1:9000", Region: "r"}, ""},
		{"s3://b?endpoint=https://s3.example:8443", s3store.Config{Bucket: "b", Endpoint: "s3.example:8443", Secure: true}, ""},
		{"s3://b/p", s3store.Config{Bucket: "b", Prefix: "p", Endpoint: "s3.amazonaws.com", Secure: true}, ""},
		{"s3://b/p?endpoint=http://[::1]:9000", s3store.Config{Bucket: "b", Prefix: "p", Endpoint: "[::1]:9000"}, ""},
		{"s3://b/p?endpoint=http://s3.example", s3store.Config{}, "loopback"},
		{"s3://b/p?endpoint=ftp://127.0.0.1", s3store.Config{}, "want http"},
		{"s3://b/p?endpoint=http://127.0.0.1/path", s3store.Config{}, "want http"},
		{"s3://b/p?regoin=x", s3store.Config{}, "unknown parameter"},
		{"file:/var/lib/x", s3store.Config{}, "want s3://"},
		{"s3:///p", s3store.Config{}, "want s3://"},
		{"s3://key:secret@b/p", s3store.Config{}, "want s3://"},
		{"s3://b/a/../p", s3store.Config{}, "dot segment"},
		{"s3://b/a//p", s3store.Config{}, "empty"},
	} {
		got, err := s3store.ParseURL(tt.url)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseURL(%q) = %+v, %v; want an error with %q", tt.url, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", tt.url, got, err, tt.want)
		}
	}
}

// TestOpenFromEnvironment opens the store by its URL with the credentials
// from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the user's contract.
func TestOpenFromEnvironment(t *testing.T) {
	srv := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	s, err := s3store.Open(t.Context(), srv.URL(), s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Put(t.Context(), strings.NewReader("hello"), resource.PutOptions{Size: 5})
	if err != nil || info.ID != resource.IDOf([]byte("hello")) {
		t.Fatalf("Put = %+v, %v", info, err)
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	if _, err := s3store.Open(t.Context(), srv.URL(), s3store.Options{}); err == nil {
		t.Error("Open with a wrong secret succeeded")
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	if _, err := s3store.Open(t.Context(), srv.URL(), s3store.Options{}); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("Open without credentials: %v", err)
	}
}

// TestOpenEncrypted: with a key, Open gives the sealed store; its objects
// hold no plain byte.
func TestOpenEncrypted(t *testing.T) {
	srv := s3test.Start(t)
	opt := srv.Options()
	opt.Key = bytes.Repeat([]byte{7}, 32)
	s, err := s3store.Open(t.Context(), srv.URL(), opt)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("plain text "), 1000)
	info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := resource.Check(t.Context(), s, info.ID); err != nil || got.Size != int64(len(data)) {
		t.Fatalf("Check = %+v, %v", got, err)
	}
	objects, _ := keys(t, srv)
	objects = slices.DeleteFunc(objects, func(k string) bool { return strings.HasSuffix(k, "/fo/format") })
	if len(objects) != 1 {
		t.Fatalf("bucket holds %v, want one object and the format", objects)
	}
	r, _, _, err := minio.Core{Client: srv.Client(t)}.GetObject(t.Context(), srv.Bucket, objects[0], minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(r)
	r.Close()
	if bytes.Contains(raw, []byte("plain text")) {
		t.Error("the object holds the plain bytes")
	}
}

// TestFormat: the format object refuses a store opened with a missing,
// unexpected or other key, before any resource is read as damaged.
func TestFormat(t *testing.T) {
	srv := s3test.Start(t)
	key1, key2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	open := func(url string, key []byte) error {
		opt := srv.Options()
		opt.Key = key
		_, err := s3store.Open(t.Context(), url, opt)
		return err
	}
	plain, enc := srv.URL(), srv.URL()
	for _, tt := range []struct {
		url  string
		key  []byte
		want string // "" for success
	}{
		{plain, nil, ""}, // creates the format
		{plain, nil, ""},
		{plain, key1, "not encrypted"},
		{enc, key1, ""},
		{enc, key1, ""},
		{enc, nil, "no key was given"},
		{enc, key2, "another key"},
		{enc, key1[:16], "16 bytes"},
	} {
		err := open(tt.url, tt.key)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Open(%s, key %x...) = %v, want %q", tt.url[:20], tt.key[:min(2, len(tt.key))], err, tt.want)
		}
	}
}

// TestTLS: an https endpoint with a private CA (Options.CAFile); without the
// CA the certificate is refused.
func TestTLS(t *testing.T) {
	srv := s3test.StartTLS(t)
	if !strings.HasPrefix(srv.Endpoint, "https://127.0.0.1:") {
		t.Fatalf("endpoint %s", srv.Endpoint)
	}
	s, err := s3store.Open(t.Context(), srv.URL(), srv.Options())
	if err != nil {
		t.Fatal(err)
	}
	data := storetest.Data(1000, 3*storetest.ChunkSize+1)
	info, err := s.Put(t.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := resource.Check(t.Context(), s, info.ID); err != nil || got.Size != int64(len(data)) {
		t.Errorf("Check over https = %+v, %v", got, err)
	}
	opt := srv.Options()
	opt.CAFile = ""
	if _, err := s3store.Open(t.Context(), srv.URL(), opt); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Open without the CA: %v, want a certificate error", err)
	}
}
