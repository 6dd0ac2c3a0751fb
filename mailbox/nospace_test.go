package mailbox_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/upload/stagingtest"
)

// TestUploadOutOfSpace fills a domain's staging and resource directories,
// each a 4 MiB tmpfs, for real. An upload that does not fit answers 507
// insufficient_storage, not 400 upload_incomplete or 500 internal; the bytes
// of the request that failed are given back at once (not kept for the
// upload's 7 days); and the domain goes on working for what fits: a
// smaller upload, a draft, a local send.
func TestUploadOutOfSpace(t *testing.T) {
	dir := t.TempDir()
	const disk = 4 << 20
	stagingtest.SmallDisk(t, filepath.Join(dir, "uploads"), disk)
	stagingtest.SmallDisk(t, filepath.Join(dir, "resources"), disk)
	d := testenv.Start(t, "a.test", testenv.Options{Dir: dir})
	alice := d.AddUser(t, "alice@a.test")
	d.AddUser(t, "bob@a.test")
	random := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	uploads, resources := filepath.Join(dir, "uploads"), filepath.Join(dir, "resources")
	base := stagingtest.Used(t, uploads)
	octets := map[string][]string{"Content-Type": {"application/offset+octet-stream"}}
	patch := func(u mailbox.UploadSession, off int, b []byte) (int, string, string) {
		hdr := octets
		hdr["Upload-Offset"] = []string{fmt.Sprint(off)}
		resp, body := do(t, alice, "PATCH", d.URL+"/api/v1/uploads/"+u.UploadID, bytes.NewReader(b), hdr)
		return resp.StatusCode, errorCode(resp, body), resp.Header.Get("Upload-Offset")
	}

	t.Run("resumable in one request", func(t *testing.T) {
		big := random(6 << 20)
		u, err := alice.CreateUpload(ctx, mailbox.NewUploadSession{Size: int64(len(big))})
		if err != nil {
			t.Fatal(err)
		}
		status, code, off := patch(u, 0, big)
		if status != 507 || code != "insufficient_storage" || off != "0" {
			t.Fatalf("%d %s Upload-Offset %q, want 507 insufficient_storage at 0", status, code, off)
		}
		if n := stagingtest.Used(t, uploads) - base; n > 64<<10 {
			t.Fatalf("%d bytes of the failed request still staged", n)
		}
		if s, err := alice.UploadStatus(ctx, u.UploadID); err != nil || s.Offset != 0 {
			t.Fatalf("upload at %+v %v, want offset 0", s, err)
		}
	})

	t.Run("resumable in chunks", func(t *testing.T) {
		big := random(6 << 20)
		u, err := alice.CreateUpload(ctx, mailbox.NewUploadSession{Size: int64(len(big))})
		if err != nil {
			t.Fatal(err)
		}
		if status, code, _ := patch(u, 0, big[:2<<20]); status != 200 {
			t.Fatalf("first chunk: %d %s", status, code)
		}
		kept := stagingtest.Used(t, uploads)
		status, code, off := patch(u, 2<<20, big[2<<20:])
		if status != 507 || code != "insufficient_storage" || off != fmt.Sprint(2<<20) {
			t.Fatalf("%d %s Upload-Offset %q, want 507 insufficient_storage at %d", status, code, off, 2<<20)
		}
		// The chunk that failed is given back; the one acknowledged stays.
		if n := stagingtest.Used(t, uploads) - kept; n > 64<<10 {
			t.Fatalf("%d bytes of the failed chunk still staged", n)
		}
		if err := alice.DeleteUpload(ctx, u.UploadID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("single-shot", func(t *testing.T) {
		before := snapshot(t, d)
		big := random(6 << 20)
		resp, body := do(t, alice, "POST", d.URL+"/api/v1/resources", bytes.NewReader(big), nil)
		if resp.StatusCode != 507 || errorCode(resp, body) != "insufficient_storage" {
			t.Fatalf("%d %q, want 507 insufficient_storage", resp.StatusCode, body)
		}
		if after := snapshot(t, d); !before.equal(after) {
			t.Fatalf("a half-written resource is left: %v", after.files)
		}
		if n := stagingtest.Used(t, resources); n > 256<<10 {
			t.Fatalf("%d bytes of the resource disk in use after the failed upload", n)
		}
	})

	t.Run("commit does not fit", func(t *testing.T) {
		// 3 MiB stages, but the resource disk holds the first 3 MiB
		// resource only once: the second commit runs out of space.
		upload(t, alice, random(3<<20))
		second := random(3 << 20)
		u, err := alice.CreateUpload(ctx, mailbox.NewUploadSession{Size: int64(len(second))})
		if err != nil {
			t.Fatal(err)
		}
		status, code, _ := patch(u, 0, second)
		if status != 507 || code != "insufficient_storage" {
			t.Fatalf("%d %s, want 507 insufficient_storage", status, code)
		}
		if n := stagingtest.Used(t, uploads) - base; n > 64<<10 {
			t.Fatalf("%d bytes still staged after a commit that did not fit", n)
		}
		if _, err := alice.UploadStatus(ctx, u.UploadID); err == nil {
			t.Fatal("the upload that did not fit is still there")
		}
		// Make room again for the rest of the test.
		if err := os.RemoveAll(filepath.Join(resources, "blobs")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("what fits still works", func(t *testing.T) {
		small := random(100 << 10)
		u, err := alice.CreateUpload(ctx, mailbox.NewUploadSession{Size: int64(len(small)), ContentID: resource.IDOf(small)})
		if err != nil {
			t.Fatal(err)
		}
		up, err := alice.AppendUpload(ctx, u.UploadID, 0, bytes.NewReader(small))
		if err != nil || up.ContentID != resource.IDOf(small) {
			t.Fatalf("small resumable upload: %+v %v", up, err)
		}
		text := upload(t, alice, []byte("it fits"))
		att := mailbox.Upload{ContentID: up.ContentID, Size: up.Size}
		dr, err := alice.CreateDraft(ctx, compose(t, "", []string{"bob@a.test"}, nil, nil, "small", text, att))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Send(ctx, dr.ID); err != nil {
			t.Fatalf("a local send after the disk was full: %v", err)
		}
	})
}
