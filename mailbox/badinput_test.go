package mailbox_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
)

// do sends one request as c and returns the answer with its body read.
func do(t *testing.T, c *client.Client, method, url string, body io.Reader, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// errorCode returns the code of a JSON error body, or "" if it is none.
func errorCode(resp *http.Response, b []byte) string {
	var e errs.Body
	if resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// TestDownloadRange holds the download route to RFC 9110 §13-14 for a
// 3000-byte resource: each Range is answered with the right status, a
// Content-Range that is valid for it, and the right bytes.
func TestDownloadRange(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	body := make([]byte, 3000)
	rand.Read(body)
	up := upload(t, alice, body)
	empty := upload(t, alice, nil)
	text := upload(t, alice, []byte("x"))
	dr, err := alice.CreateDraft(ctx, compose(t, "", []string{"alice@a.test"}, nil, nil, "self", text, up, empty))
	if err != nil {
		t.Fatal(err)
	}
	base := d.URL + "/api/v1/messages/" + dr.ID + "/resources/"
	etag := `"` + string(up.ContentID) + `"`
	tests := []struct {
		name   string
		method string
		empty  bool // the 0-byte resource
		hdr    http.Header
		status int
		cr     string // Content-Range
		from   int    // the body is body[from:to]
		to     int
		code   string // the JSON error code
	}{
		{"whole", "GET", false, nil, 200, "", 0, 3000, ""},
		{"first byte", "GET", false, http.Header{"Range": {"bytes=0-0"}}, 206, "bytes 0-0/3000", 0, 1, ""},
		{"open", "GET", false, http.Header{"Range": {"bytes=2990-"}}, 206, "bytes 2990-2999/3000", 2990, 3000, ""},
		{"suffix", "GET", false, http.Header{"Range": {"bytes=-10"}}, 206, "bytes 2990-2999/3000", 2990, 3000, ""},
		{"suffix longer than the resource", "GET", false, http.Header{"Range": {"bytes=-5000"}}, 206, "bytes 0-2999/3000", 0, 3000, ""},
		{"last-pos past the end", "GET", false, http.Header{"Range": {"bytes=100-99999"}}, 206, "bytes 100-2999/3000", 100, 3000, ""},
		{"suffix zero is unsatisfiable", "GET", false, http.Header{"Range": {"bytes=-0"}}, 416, "bytes */3000", 0, 0, "range_not_satisfiable"},
		{"first-pos at the end", "GET", false, http.Header{"Range": {"bytes=3000-"}}, 416, "bytes */3000", 0, 0, "range_not_satisfiable"},
		{"HEAD unsatisfiable", "HEAD", false, http.Header{"Range": {"bytes=3000-"}}, 416, "bytes */3000", 0, 0, ""},
		{"unknown unit is ignored", "GET", false, http.Header{"Range": {"items=0-10"}}, 200, "", 0, 3000, ""},
		{"invalid last < first is ignored", "GET", false, http.Header{"Range": {"bytes=20-10"}}, 200, "", 0, 3000, ""},
		{"several ranges are answered whole", "GET", false, http.Header{"Range": {"bytes=0-1,5-6"}}, 200, "", 0, 3000, ""},
		{"whitespace", "GET", false, http.Header{"Range": {"bytes= 5-9 ,"}}, 206, "bytes 5-9/3000", 5, 10, ""},
		{"If-Range current", "GET", false, http.Header{"Range": {"bytes=0-9"}, "If-Range": {etag}}, 206, "bytes 0-9/3000", 0, 10, ""},
		{"If-Range stale", "GET", false, http.Header{"Range": {"bytes=0-9"}, "If-Range": {`"other"`}}, 200, "", 0, 3000, ""},
		{"If-None-Match", "GET", false, http.Header{"If-None-Match": {etag}, "Range": {"bytes=0-9"}}, 304, "", 0, 0, ""},
		{"If-Match other", "GET", false, http.Header{"If-Match": {`"other"`}}, 412, "", 0, 0, "precondition_failed"},
		{"HEAD range", "HEAD", false, http.Header{"Range": {"bytes=0-9"}}, 206, "bytes 0-9/3000", 0, 0, ""},
		{"empty resource whole", "GET", true, nil, 200, "", 0, 0, ""},
		{"empty resource int-range", "GET", true, http.Header{"Range": {"bytes=0-0"}}, 416, "bytes */0", 0, 0, "range_not_satisfiable"},
		{"empty resource suffix", "GET", true, http.Header{"Range": {"bytes=-1"}}, 200, "", 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := base + string(up.ContentID)
			want := body[tt.from:tt.to]
			if tt.empty {
				url, want = base+string(empty.ContentID), nil
			}
			resp, b := do(t, alice, tt.method, url, nil, tt.hdr)
			if resp.StatusCode != tt.status || resp.Header.Get("Content-Range") != tt.cr {
				t.Fatalf("%d Content-Range %q, want %d %q", resp.StatusCode, resp.Header.Get("Content-Range"), tt.status, tt.cr)
			}
			if tt.code != "" {
				if got := errorCode(resp, b); got != tt.code {
					t.Fatalf("code %q, want %q (%q)", got, tt.code, b)
				}
				return
			}
			if tt.status >= 300 || tt.method == "HEAD" {
				if len(b) != 0 {
					t.Fatalf("%d bytes of body, want none", len(b))
				}
				return
			}
			if !bytes.Equal(b, want) {
				t.Fatalf("body of %d bytes, want %d", len(b), len(want))
			}
			if resp.Header.Get("ETag") != `"`+strings.Trim(url[strings.LastIndex(url, "/")+1:], "/")+`"` {
				t.Fatalf("ETag %q", resp.Header.Get("ETag"))
			}
		})
	}
}

// TestStrictJSONBodies sends every JSON-taking route of the mailbox API
// bodies that encoding/json alone would accept and act on: a member name
// in another case, a member twice (the last would win), a member under a
// case-folded twin, and for new uploads a body without its size. Each is
// refused with 400 and a stable code, and a read-back shows that nothing
// changed: the change log, the resources, the staged uploads, the flag.
func TestStrictJSONBodies(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	d.AddUser(t, "bob@a.test")
	text := upload(t, alice, []byte("body"))
	received := sendToSelf(t, alice, "alice@a.test", text) // unseen
	dr, err := alice.CreateDraft(ctx, compose(t, "", []string{"bob@a.test"}, nil, nil, "draft", text))
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]bool{"malformed_json": true, "duplicate_key": true, "unknown_member": true}
	headers := `{"Content-Type":["multipart/mixed"],"From":"alice@a.test"}`
	tests := []struct {
		name, method, path, body string
		code                     string // "" for the forward routes: any of refused
	}{
		{"PATCH member case", "PATCH", "/api/v1/messages/" + received.ID, `{"Seen":true}`, "unknown_member"},
		{"PATCH member twice", "PATCH", "/api/v1/messages/" + received.ID, `{"seen":false,"seen":true}`, "duplicate_key"},
		{"PATCH case-folded twin", "PATCH", "/api/v1/messages/" + received.ID, `{"seen":false,"SEEN":true}`, "duplicate_key"},
		{"PATCH long s twin", "PATCH", "/api/v1/messages/" + received.ID, `{"seen":false,"ſeen":true}`, "duplicate_key"},
		{"PATCH unknown member", "PATCH", "/api/v1/messages/" + received.ID, `{"seen":true,"flagged":true}`, "unknown_member"},
		{"PATCH empty", "PATCH", "/api/v1/messages/" + received.ID, `{}`, "missing_member"},
		{"PATCH null seen", "PATCH", "/api/v1/messages/" + received.ID, `{"seen":null}`, "missing_member"},
		{"PATCH null", "PATCH", "/api/v1/messages/" + received.ID, `null`, "malformed_json"},
		{"uploads member case", "POST", "/api/v1/uploads", `{"SIZE":10}`, "unknown_member"},
		{"uploads member twice", "POST", "/api/v1/uploads", `{"size":1,"size":10}`, "duplicate_key"},
		{"uploads case-folded twin", "POST", "/api/v1/uploads", `{"size":1,"content_id":"x","Content_ID":"y"}`, "duplicate_key"},
		{"uploads empty object", "POST", "/api/v1/uploads", `{}`, "missing_member"},
		{"uploads null size", "POST", "/api/v1/uploads", `{"size":null}`, "missing_member"},
		{"uploads null", "POST", "/api/v1/uploads", `null`, "malformed_json"},
		{"uploads array", "POST", "/api/v1/uploads", `[{"size":1}]`, "malformed_json"},
		{"draft member twice", "POST", "/api/v1/messages", `{"headers":` + headers + `,"headers":` + headers + `,"parts":[]}`, "duplicate_key"},
		{"draft member case", "POST", "/api/v1/messages", `{"Headers":` + headers + `,"parts":[]}`, "unknown_member"},
		{"replace member twice", "PUT", "/api/v1/messages/" + dr.ID, `{"headers":` + headers + `,"headers":` + headers + `,"parts":[]}`, "duplicate_key"},
		{"replace member case", "PUT", "/api/v1/messages/" + dr.ID, `{"headers":` + headers + `,"PARTS":[]}`, "unknown_member"},
		{"forward member twice", "POST", "/api/v1/messages/" + received.ID + "/forward", `{"to":["alice@a.test"],"to":["bob@a.test"]}`, "duplicate_key"},
		{"forward member case", "POST", "/api/v1/messages/" + received.ID + "/forward", `{"To":["bob@a.test"]}`, "unknown_member"},
		{"forwarding member twice", "PUT", "/api/v1/forwarding", `{"to":[],"TO":["bob@a.test"]}`, "duplicate_key"},
		{"forwarding member case", "PUT", "/api/v1/forwarding", `{"To":["bob@a.test"]}`, "unknown_member"},
	}
	read := func() string {
		m, err := alice.Get(ctx, received.ID)
		if err != nil {
			t.Fatal(err)
		}
		dm, err := alice.Get(ctx, dr.ID)
		if err != nil {
			t.Fatal(err)
		}
		af, err := alice.AutoForward(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(uploadState(t, d), m.Seen, string(dm.Placeholder), af)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := read()
			resp, b := do(t, alice, tt.method, d.URL+tt.path, strings.NewReader(tt.body), http.Header{"Content-Type": {"application/json"}})
			code := errorCode(resp, b)
			if resp.StatusCode != 400 || tt.code != "" && code != tt.code || tt.code == "" && !refused[code] {
				t.Fatalf("%d %q, want 400 %s", resp.StatusCode, b, tt.code)
			}
			if after := read(); after != before {
				t.Fatalf("state changed:\n%s\n%s", before, after)
			}
		})
	}
}

// rawTLS opens an HTTP/1.1 connection of its own to the domain, for bytes
// that no well-behaved client sends. The TCP connection is returned too,
// to reset it.
func rawTLS(t *testing.T, d *testenv.Domain) (*tls.Conn, *net.TCPConn) {
	t.Helper()
	pool, err := tlsca.LoadPool(d.CA)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(d.URL, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	conn := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	if err := conn.Handshake(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn, c.(*net.TCPConn)
}

// requestCount is how many requests the domain's metrics counted with the
// method and status.
func requestCount(t *testing.T, d *testenv.Domain, method, code string) float64 {
	t.Helper()
	mfs, err := d.Server.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "pullmail_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["code"] == code {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// TestMalformedBody writes request bodies whose chunked encoding is broken
// over a raw TLS connection: the answer is 400 malformed_body (the client's
// fault, not a 500 internal), and nothing is stored or staged.
func TestMalformedBody(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	chunks := []struct{ name, body string }{
		{"bad byte in chunk length", "5\r\nhello\r\nZZ\r\nxx\r\n0\r\n\r\n"},
		{"no CRLF after the data", "5\r\nhelloXX\r\n0\r\n\r\n"},
		{"chunk length overflow", "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"},
	}
	for _, patch := range []bool{false, true} {
		for _, c := range chunks {
			t.Run(fmt.Sprintf("patch=%v/%s", patch, c.name), func(t *testing.T) {
				head := "POST /api/v1/resources HTTP/1.1\r\n"
				var u mailbox.UploadSession
				if patch {
					var err error
					if u, err = alice.CreateUpload(ctx, mailbox.NewUploadSession{Size: 100}); err != nil {
						t.Fatal(err)
					}
					head = "PATCH /api/v1/uploads/" + u.UploadID + " HTTP/1.1\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
				}
				before := snapshot(t, d)
				conn, _ := rawTLS(t, d)
				fmt.Fprintf(conn, "%sHost: a.test\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n%s", head, alice.Token, c.body)
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 400 || errorCode(resp, b) != "malformed_body" {
					t.Fatalf("%d %q, want 400 malformed_body", resp.StatusCode, b)
				}
				if after := snapshot(t, d); !before.equal(after) {
					t.Fatalf("state changed: %+v -> %+v", before, after)
				}
				if patch {
					// The bytes of the chunks before the fault count, as
					// for a body cut short (§8.14); the answer says so.
					s, err := alice.UploadStatus(ctx, u.UploadID)
					if err != nil {
						t.Fatal(err)
					}
					if got := resp.Header.Get("Upload-Offset"); got != fmt.Sprint(s.Offset) || s.Offset > 5 {
						t.Fatalf("Upload-Offset %q, the upload is at %d", got, s.Offset)
					}
				}
			})
		}
	}
	if n := requestCount(t, d, "POST", "500") + requestCount(t, d, "PATCH", "500"); n != 0 {
		t.Fatalf("%v requests answered 500", n)
	}
}

// TestCutBodyNotInternal resets the connection in the middle of an
// upload's body, single-shot and resumable: the server answers nobody, but
// it must count and log the request as the client's failure (400
// upload_incomplete), not as a 5xx (500 internal, 503 cancelled), and
// store nothing for the single-shot upload.
func TestCutBodyNotInternal(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	u, err := alice.CreateUpload(ctx, mailbox.NewUploadSession{Size: 1000000})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ method, head string }{
		{"POST", "POST /api/v1/resources HTTP/1.1\r\n"},
		{"PATCH", "PATCH /api/v1/uploads/" + u.UploadID + " HTTP/1.1\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"},
	} {
		t.Run(tt.method, func(t *testing.T) {
			before := snapshot(t, d)
			conn, tcp := rawTLS(t, d)
			fmt.Fprintf(conn, "%sHost: a.test\r\nAuthorization: Bearer %s\r\nContent-Length: 1000000\r\n\r\n", tt.head, alice.Token)
			conn.Write(bytes.Repeat([]byte("y"), 70000))
			time.Sleep(100 * time.Millisecond)
			tcp.SetLinger(0) // close with a RST, no close_notify: the server's read fails with ECONNRESET
			tcp.Close()
			counts := func() (ok, bad float64) {
				return requestCount(t, d, tt.method, "400"), requestCount(t, d, tt.method, "500") + requestCount(t, d, tt.method, "503")
			}
			deadline := time.Now().Add(5 * time.Second)
			for ok, bad := counts(); ok+bad == 0; ok, bad = counts() {
				if time.Now().After(deadline) {
					t.Fatal("the server did not finish the request")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if ok, bad := counts(); ok != 1 || bad != 0 {
				t.Fatalf("a reset upload answered 400 %v times and 5xx %v times, want 400 once", ok, bad)
			}
			if after := snapshot(t, d); !before.equal(after) {
				t.Fatalf("the cut upload left %v", after.files)
			}
		})
	}
}

// TestRepeatedUploadOffset sends PATCH uploads with Upload-Offset given
// more than once, conflicting or alike: a proxy and the server could each
// take another one, so the request is refused (400 repeated_header) and the
// upload does not move.
func TestRepeatedUploadOffset(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	u, err := alice.CreateUpload(ctx, mailbox.NewUploadSession{Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AppendUpload(ctx, u.UploadID, 0, strings.NewReader("01234")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		offsets []string
		code    string
	}{
		{"conflicting", []string{"5", "0"}, "repeated_header"},
		{"conflicting, current second", []string{"0", "5"}, "repeated_header"},
		{"identical", []string{"5", "5"}, "repeated_header"},
		{"three", []string{"5", "5", "5"}, "repeated_header"},
		{"a list in one line", []string{"5, 5"}, "bad_offset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := uploadState(t, d)
			hdr := http.Header{"Upload-Offset": tt.offsets, "Content-Type": {"application/offset+octet-stream"}}
			resp, b := do(t, alice, "PATCH", d.URL+"/api/v1/uploads/"+u.UploadID, strings.NewReader("56789"), hdr)
			if resp.StatusCode != 400 || errorCode(resp, b) != tt.code {
				t.Fatalf("%d %q, want 400 %s", resp.StatusCode, b, tt.code)
			}
			if after := uploadState(t, d); after != before {
				t.Fatalf("state changed:\n%s\n%s", before, after)
			}
		})
	}
	s, err := alice.UploadStatus(ctx, u.UploadID)
	if err != nil || s.Offset != 5 {
		t.Fatalf("upload at %d (%v), want 5", s.Offset, err)
	}
}

// TestDownloadFailedPull reads a received copy whose pull failed for good,
// as the MTA leaves it (status failed, a reason, the resource never
// stored): the message shows the reason in status_reason, and downloading
// its resource answers 409 resource_unavailable naming the reason, not 404
// not_found (which would say the message does not reference it). A copy
// still fetching answers not_ready.
func TestDownloadFailedPull(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	u, err := d.Server.Meta.UserByAddress(ctx, "alice@a.test")
	if err != nil {
		t.Fatal(err)
	}
	missing := mailbox.Upload{ContentID: resource.IDOf([]byte("never arrived")), Size: 13}
	doc := compose(t, "Bob <bob@b.test>", []string{"alice@a.test"}, nil, nil, "from afar", missing)
	const reason = "refused: b.test answered 403 to the fetch"
	now := time.Now().UTC()
	copies := map[meta.Status]string{meta.StatusFailed: "mfailedaaaaaaaaaaaaaaaaaaa", meta.StatusFetching: "mfetchingaaaaaaaaaaaaaaaa"}
	err = d.Server.Meta.Update(ctx, func(tx meta.Tx) error {
		for status, id := range copies {
			m := meta.Message{ID: id, UserID: u.ID, Folder: meta.Inbox, MessageID: "<" + id + "@b.test>", Status: status,
				From: "Bob <bob@b.test>", Subject: "from afar", Date: now, Created: now, Updated: now, Placeholder: doc,
				Refs: []meta.Ref{{ID: missing.ContentID, Size: missing.Size}}}
			if status == meta.StatusFailed {
				m.StatusReason = reason
			}
			if err := tx.InsertMessage(ctx, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := alice.Get(ctx, copies[meta.StatusFailed])
	if err != nil || m.Status != "failed" || m.StatusReason != reason {
		t.Fatalf("failed copy: status %q reason %q (%v)", m.Status, m.StatusReason, err)
	}
	for _, tt := range []struct {
		status      meta.Status
		code, label string
	}{
		{meta.StatusFailed, "resource_unavailable", reason},
		{meta.StatusFetching, "not_ready", ""},
	} {
		resp, b := do(t, alice, "GET", d.URL+"/api/v1/messages/"+copies[tt.status]+"/resources/"+string(missing.ContentID), nil, nil)
		var e errs.Body
		json.Unmarshal(b, &e)
		if resp.StatusCode != 409 || e.Error.Code != tt.code || !strings.Contains(e.Error.Message, tt.label) {
			t.Fatalf("%s copy: %d %q, want 409 %s naming %q", tt.status, resp.StatusCode, b, tt.code, tt.label)
		}
	}
}
