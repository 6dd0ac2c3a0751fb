package mailbox_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
	"github.com/pullmail/pullmail/upload/stagingtest"
)

// uploadState is what a refused upload request must leave unchanged: the
// change log, the resource files, and every staged file with its size.
func uploadState(t *testing.T, d *testenv.Domain) string {
	t.Helper()
	s := snapshot(t, d)
	var staged []string
	dir := filepath.Join(d.Dir, "uploads")
	for _, f := range testenv.Files(t, dir) {
		info, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, f))
		staged = append(staged, fmt.Sprintf("%s:%d:%x", f, info.Size(), resource.IDOf(b)))
	}
	return fmt.Sprint(s.cursor, s.files, staged)
}

// sendTo sends a draft naming the resources to the user themselves and
// returns their inbox copy, for downloads.
func sendToSelf(t *testing.T, c mailbox.API, addr string, text mailbox.Upload, atts ...mailbox.Upload) mailbox.Message {
	t.Helper()
	dr, err := c.CreateDraft(ctx, compose(t, "", []string{addr}, nil, nil, "self", text, atts...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, dr.ID); err != nil {
		t.Fatal(err)
	}
	in := inbox(t, c)
	if len(in) == 0 {
		t.Fatal("no inbox copy")
	}
	return in[0]
}

// TestResumableUpload uploads in chunks through the client, with a chunk
// size that does not divide the size, and downloads the resource through a
// message, byte-identical.
func TestResumableUpload(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	data := stagingtest.Data(11, 3<<20+5)
	up, err := alice.UploadResumable(ctx, bytes.NewReader(data), int64(len(data)), resource.IDOf(data), 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	if up.ContentID != resource.IDOf(data) || up.Size != int64(len(data)) {
		t.Fatalf("UploadResumable = %+v", up)
	}
	text := upload(t, alice, []byte("see attached"))
	m := sendToSelf(t, alice, "alice@a.test", text, up)
	if got := download(t, alice, m.ID, up.ContentID); !bytes.Equal(got, data) {
		t.Fatal("downloaded resource differs")
	}
	// The committed session stays readable, and a PATCH at its end
	// answers the Content-ID again.
	u, err := alice.CreateUpload(ctx, mailbox.NewUploadSession{Size: 3})
	if err != nil {
		t.Fatal(err)
	}
	done, err := alice.AppendUpload(ctx, u.UploadID, 0, strings.NewReader("abc"))
	if err != nil || done.ContentID != resource.IDOf([]byte("abc")) || done.Offset != 3 {
		t.Fatalf("last PATCH = %+v, %v", done, err)
	}
	for range 2 {
		if again, err := alice.AppendUpload(ctx, u.UploadID, 3, strings.NewReader("")); err != nil || again != done {
			t.Errorf("PATCH after commit = %+v, %v; want %+v", again, err, done)
		}
		if st, err := alice.UploadStatus(ctx, u.UploadID); err != nil || st != done {
			t.Errorf("status after commit = %+v, %v", st, err)
		}
	}
	// Zero bytes: committed at creation.
	z, err := alice.CreateUpload(ctx, mailbox.NewUploadSession{Size: 0})
	if err != nil || z.ContentID != resource.EmptyID {
		t.Fatalf("empty upload = %+v, %v", z, err)
	}
	if ok, err := d.Server.Meta.Holds(ctx, userID(t, d, "alice@a.test"), resource.EmptyID); err != nil || !ok {
		t.Errorf("empty upload not recorded as alice's: %v %v", ok, err)
	}
}

func userID(t *testing.T, d *testenv.Domain, addr string) int64 {
	t.Helper()
	u, err := d.Server.Meta.UserByAddress(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

// TestUploadDroppedConnection drops the connection in the middle of a
// PATCH body: the bytes that arrived are kept, the client resumes from the
// server's offset, and the resource is byte-identical.
func TestUploadDroppedConnection(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	data := stagingtest.Data(12, 2<<20)
	u, err := alice.CreateUpload(ctx, mailbox.NewUploadSession{Size: int64(len(data)), ContentID: resource.IDOf(data)})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := tlsca.LoadPool(d.CA)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(d.URL, "https://"), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	const sent = 777777
	fmt.Fprintf(conn, "PATCH /api/v1/uploads/%s HTTP/1.1\r\nHost: a.test\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: %d\r\n\r\n", u.UploadID, alice.Token, len(data))
	if _, err := conn.Write(data[:sent]); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// The server notices the hang-up, counts what arrived, and says so.
	var st mailbox.UploadSession
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, err = alice.UploadStatus(ctx, u.UploadID); err != nil {
			t.Fatal(err)
		}
		if st.Offset == sent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offset %d after the drop, want the %d bytes that arrived", st.Offset, sent)
		}
	}
	// A client that resumes from a stale offset learns the real one.
	_, err = alice.AppendUpload(ctx, u.UploadID, 0, bytes.NewReader(data))
	wantCode(t, err, "offset_mismatch")
	done, err := alice.AppendUpload(ctx, u.UploadID, st.Offset, bytes.NewReader(data[st.Offset:]))
	if err != nil || done.ContentID != resource.IDOf(data) {
		t.Fatalf("resume = %+v, %v", done, err)
	}
	m := sendToSelf(t, alice, "alice@a.test", upload(t, alice, []byte("x")), mailbox.Upload{ContentID: done.ContentID, Size: done.Size})
	if got := download(t, alice, m.ID, done.ContentID); !bytes.Equal(got, data) {
		t.Fatal("resumed resource differs")
	}
}

// TestUploadRestart restarts the server between two chunks.
func TestUploadRestart(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	data := stagingtest.Data(13, 1<<20+3)
	u, err := alice.CreateUpload(ctx, mailbox.NewUploadSession{Size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AppendUpload(ctx, u.UploadID, 0, bytes.NewReader(data[:500001])); err != nil {
		t.Fatal(err)
	}
	d.Stop()
	d2 := testenv.Start(t, "a.test", testenv.Options{Dir: d.Dir})
	alice2 := d2.Client(t, alice.Token)
	st, err := alice2.UploadStatus(ctx, u.UploadID)
	if err != nil || st.Offset != 500001 {
		t.Fatalf("after restart: %+v, %v", st, err)
	}
	done, err := alice2.AppendUpload(ctx, u.UploadID, st.Offset, bytes.NewReader(data[st.Offset:]))
	if err != nil || done.ContentID != resource.IDOf(data) {
		t.Fatalf("after restart: %+v, %v", done, err)
	}
	m := sendToSelf(t, alice2, "alice@a.test", upload(t, alice2, []byte("x")), mailbox.Upload{ContentID: done.ContentID, Size: done.Size})
	if got := download(t, alice2, m.ID, done.ContentID); !bytes.Equal(got, data) {
		t.Fatal("resource differs after a restart")
	}
}

// TestUploadErrors checks every error of the upload routes: its status and
// code, the Upload-Offset of offset_mismatch, and that nothing changed.
func TestUploadErrors(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{MaxUpload: 1 << 20})
	alice := d.AddUser(t, "alice@a.test")
	bob := d.AddUser(t, "bob@a.test")
	u, err := alice.CreateUpload(ctx, mailbox.NewUploadSession{Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AppendUpload(ctx, u.UploadID, 0, strings.NewReader("01234")); err != nil {
		t.Fatal(err)
	}
	bad, err := alice.CreateUpload(ctx, mailbox.NewUploadSession{Size: 3, ContentID: resource.IDOf([]byte("abc"))})
	if err != nil {
		t.Fatal(err)
	}
	patch := func(token, id, offset string, body string, chunked bool) *http.Request {
		var r io.Reader = strings.NewReader(body)
		if chunked {
			r = io.MultiReader(r) // no length known: sent chunked
		}
		req, _ := http.NewRequest("PATCH", d.URL+"/api/v1/uploads/"+id, r)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		if offset != "" {
			req.Header.Set("Upload-Offset", offset)
		}
		return req
	}
	req := func(method, path, token, body string) *http.Request {
		r, _ := http.NewRequest(method, d.URL+path, strings.NewReader(body))
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		return r
	}
	cases := []struct {
		name    string
		req     *http.Request
		status  int
		code    string
		offset  string // the Upload-Offset the answer must carry, if any
		changes bool   // the documented change: the session is deleted
	}{
		{"negative size", req("POST", "/api/v1/uploads", alice.Token, `{"size":-1}`), 400, "bad_size", "", false},
		{"size over the limit", req("POST", "/api/v1/uploads", alice.Token, `{"size":1048577}`), 413, "too_large", "", false},
		{"bad content_id", req("POST", "/api/v1/uploads", alice.Token, `{"size":1,"content_id":"nope"}`), 400, "bad_content_id", "", false},
		{"malformed JSON", req("POST", "/api/v1/uploads", alice.Token, `{"size":"1"}`), 400, "malformed_json", "", false},
		{"unknown member", req("POST", "/api/v1/uploads", alice.Token, `{"size":1,"evil":true}`), 400, "unknown_member", "", false},
		{"no token", req("POST", "/api/v1/uploads", "", `{"size":1}`), 401, "missing_token", "", false},
		{"another user's upload", req("GET", "/api/v1/uploads/"+u.UploadID, bob.Token, ""), 404, "not_found", "", false},
		{"another user's PATCH", patch(bob.Token, u.UploadID, "5", "56789", false), 404, "not_found", "", false},
		{"another user's DELETE", req("DELETE", "/api/v1/uploads/"+u.UploadID, bob.Token, ""), 404, "not_found", "", false},
		{"unknown upload", req("GET", "/api/v1/uploads/uaaaaaaaaaaaaaaaaaaaaaaaa", alice.Token, ""), 404, "not_found", "", false},
		{"malformed id", req("GET", "/api/v1/uploads/..%2f..%2fmeta.db", alice.Token, ""), 404, "not_found", "", false},
		{"no Upload-Offset", patch(alice.Token, u.UploadID, "", "56789", false), 400, "bad_offset", "", false},
		{"malformed Upload-Offset", patch(alice.Token, u.UploadID, "+5", "56789", false), 400, "bad_offset", "", false},
		{"stale offset", patch(alice.Token, u.UploadID, "0", "01234", false), 409, "offset_mismatch", "5", false},
		{"offset ahead", patch(alice.Token, u.UploadID, "7", "789", false), 409, "offset_mismatch", "5", false},
		{"past the size (Content-Length)", patch(alice.Token, u.UploadID, "5", "56789X", false), 413, "too_large", "", false},
		{"wrong digest", patch(alice.Token, bad.UploadID, "0", "abd", false), 400, "digest_mismatch", "", true},
		{"bad page", req("GET", "/api/v1/messages?page=bm9wZQ", alice.Token, ""), 400, "bad_page", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := uploadState(t, d)
			resp, err := alice.HTTP.Do(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e errs.Body
			if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != tc.status || e.Error.Code != tc.code {
				t.Fatalf("answer %d %s, want %d %s", resp.StatusCode, b, tc.status, tc.code)
			}
			if got := resp.Header.Get("Upload-Offset"); got != tc.offset {
				t.Errorf("Upload-Offset %q, want %q", got, tc.offset)
			}
			if after := uploadState(t, d); (after != before) != tc.changes {
				t.Errorf("state changed = %v, want %v:\n%s\n%s", after != before, tc.changes, before, after)
			}
		})
	}
	// The refused digest deleted its session and stored nothing.
	_, err = alice.UploadStatus(ctx, bad.UploadID)
	wantCode(t, err, "not_found")
	if ok, _ := d.Server.Meta.Referenced(ctx, resource.IDOf([]byte("abd"))); ok {
		t.Error("a mismatched upload was recorded")
	}
	if _, err := d.Server.Store.Stat(ctx, resource.IDOf([]byte("abd"))); !errors.Is(err, resource.ErrNotFound) {
		t.Errorf("a mismatched upload was stored: %v", err)
	}
	// A chunked body past the size keeps the bytes up to it and refuses
	// the rest; the session is then full and commits on an empty PATCH.
	resp, err := alice.HTTP.Do(patch(alice.Token, u.UploadID, "5", "56789XYZ", true))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked body past the size: %d", resp.StatusCode)
	}
	done, err := alice.AppendUpload(ctx, u.UploadID, 10, strings.NewReader(""))
	if err != nil || done.ContentID != resource.IDOf([]byte("0123456789")) {
		t.Fatalf("commit of a full session = %+v, %v", done, err)
	}
	// DELETE, then the session is gone.
	if err := alice.DeleteUpload(ctx, u.UploadID); err != nil {
		t.Fatal(err)
	}
	_, err = alice.UploadStatus(ctx, u.UploadID)
	wantCode(t, err, "not_found")
	if files := testenv.Files(t, filepath.Join(d.Dir, "uploads")); slices.ContainsFunc(files, func(f string) bool {
		return strings.HasPrefix(f, u.UploadID)
	}) {
		t.Errorf("deleted session left %v", files)
	}
}

// TestUploadExpiry checks that a session past the upload TTL answers
// not_found and that garbage collection removes its files.
func TestUploadExpiry(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	d := testenv.Start(t, "a.test", testenv.Options{Clock: func() time.Time { return clock() }})
	alice := d.AddUser(t, "alice@a.test")
	u, err := alice.CreateUpload(ctx, mailbox.NewUploadSession{Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	later := now.Add(8 * 24 * time.Hour)
	clock = func() time.Time { return later }
	_, err = alice.UploadStatus(ctx, u.UploadID)
	wantCode(t, err, "not_found")
	if _, err := d.Server.Mailbox.CollectGarbage(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if files := testenv.Files(t, filepath.Join(d.Dir, "uploads")); len(files) != 0 {
		t.Errorf("expired session left %v", files)
	}
}

// TestMeFeatures checks that the server announces what it offers.
func TestMeFeatures(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	me, err := d.AddUser(t, "alice@a.test").Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(me.Features)
	if !slices.Equal(me.Features, []string{"events", "paging", "uploads"}) {
		t.Errorf("features %v", me.Features)
	}
}
