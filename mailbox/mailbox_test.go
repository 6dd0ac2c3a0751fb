package mailbox_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
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

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
)

var ctx = context.Background()

// upload stores b as alice and returns its leaf.
func upload(t testing.TB, c mailbox.API, b []byte) mailbox.Upload {
	t.Helper()
	up, err := c.Upload(ctx, bytes.NewReader(b), mailbox.UploadOptions{Size: int64(len(b))})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	if want := resource.IDOf(b); up.ContentID != want || up.Size != int64(len(b)) {
		t.Fatalf("upload answered %+v, want %s/%d", up, want, len(b))
	}
	return up
}

// compose builds a draft document with a text body and attachments.
func compose(t testing.TB, from string, to, cc, bcc []string, subject string, text mailbox.Upload, atts ...mailbox.Upload) []byte {
	t.Helper()
	m := placeholder.New(from, to, cc, bcc, subject)
	if from == "" {
		m.Header.Del(placeholder.HFrom) // the server fills in the user
	}
	p, err := placeholder.NewLeaf(text.ContentID, text.Size, "text/plain; charset=UTF-8", "inline", "")
	if err != nil {
		t.Fatal(err)
	}
	m.Parts = append(m.Parts, p)
	for i, a := range atts {
		p, err := placeholder.NewLeaf(a.ContentID, a.Size, "application/octet-stream", "attachment", fmt.Sprintf("file%d.bin", i))
		if err != nil {
			t.Fatal(err)
		}
		m.Parts = append(m.Parts, p)
	}
	return m.Canonical()
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", code)
	}
	if got := errs.CodeOf(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

func download(t *testing.T, c mailbox.API, id string, cid resource.ID) []byte {
	t.Helper()
	rc, _, err := c.Download(ctx, id, cid)
	if err != nil {
		t.Fatalf("download %s: %v", cid, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("download %s: %v", cid, err)
	}
	return b
}

func inbox(t *testing.T, c mailbox.API) []mailbox.Message {
	t.Helper()
	l, err := c.List(ctx, mailbox.ListOptions{Folder: "inbox"})
	if err != nil {
		t.Fatal(err)
	}
	return l.Messages
}

// state is what a refused request must leave unchanged.
type state struct {
	cursor int64
	files  []string
}

func snapshot(t *testing.T, d *testenv.Domain) state {
	t.Helper()
	cur, err := d.Server.Meta.Cursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return state{cur, testenv.Files(t, filepath.Join(d.Dir, "resources"))}
}

func (s state) equal(o state) bool { return s.cursor == o.cursor && slices.Equal(s.files, o.files) }

func TestSendAndRead(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypt=%v", enc), func(t *testing.T) {
			d := testenv.Start(t, "a.test", testenv.Options{EncryptAtRest: enc})
			alice := d.AddUser(t, "alice@a.test")
			bob := d.AddUser(t, "bob@a.test")

			text := upload(t, alice, []byte("Hello Bob, the photo is attached.\n"))
			photo := make([]byte, 3<<20+17)
			rand.Read(photo)
			att := upload(t, alice, photo)
			draft, err := alice.CreateDraft(ctx, compose(t, "", []string{"Bob <bob@a.test>"}, nil, nil, "Vacation photo", text, att))
			if err != nil {
				t.Fatal(err)
			}
			if draft.Folder != "drafts" || draft.Status != "draft" || draft.Date != nil || !strings.HasSuffix(draft.MessageID, "@a.test>") {
				t.Fatalf("draft %+v", draft)
			}
			filesBefore := testenv.Files(t, filepath.Join(d.Dir, "resources"))
			sent, err := alice.Send(ctx, draft.ID)
			if err != nil {
				t.Fatal(err)
			}
			if sent.Folder != "sent" || sent.Date == nil || sent.ThreadID == "" {
				t.Fatalf("sent %+v", sent)
			}
			// Local delivery is by reference: no new file.
			if after := testenv.Files(t, filepath.Join(d.Dir, "resources")); !slices.Equal(filesBefore, after) {
				t.Fatalf("send copied bytes: %v -> %v", filesBefore, after)
			}
			in := inbox(t, bob)
			if len(in) != 1 || in[0].MessageID != sent.MessageID || in[0].Status != "complete" || in[0].Seen {
				t.Fatalf("bob's inbox %+v", in)
			}
			if len(in[0].Attachments) != 1 || in[0].Attachments[0].ContentID != att.ContentID || in[0].Attachments[0].Filename != "file0.bin" {
				t.Fatalf("attachments %+v", in[0].Attachments)
			}
			got := download(t, bob, in[0].ID, att.ContentID)
			if !bytes.Equal(got, photo) {
				t.Fatal("downloaded attachment differs")
			}
			if s := string(download(t, bob, in[0].ID, text.ContentID)); !strings.HasPrefix(s, "Hello Bob") {
				t.Fatalf("text %q", s)
			}
			full, err := bob.Get(ctx, in[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			pm, err := placeholder.Parse(full.Placeholder, placeholder.DefaultLimits())
			if err != nil {
				t.Fatalf("stored placeholder invalid: %v", err)
			}
			if err := placeholder.VerifyDigests(pm); err != nil {
				t.Fatalf("digests: %v", err)
			}
			if pm.Header.Get(placeholder.HDate).String() == "" || pm.Header.Get(placeholder.HThreadID).String() != sent.ThreadID {
				t.Fatalf("server-owned headers missing: %s", full.Placeholder)
			}
			if enc {
				// No plain bytes of the photo on disk.
				probe := photo[1000:1064]
				filepath.Walk(filepath.Join(d.Dir, "resources"), func(p string, info os.FileInfo, err error) error {
					if err == nil && !info.IsDir() {
						b, _ := os.ReadFile(p)
						if bytes.Contains(b, probe) {
							t.Errorf("%s holds plaintext", p)
						}
					}
					return nil
				})
			}
			// The sent message is immutable.
			_, err = alice.UpdateDraft(ctx, sent.ID, compose(t, "", []string{"bob@a.test"}, nil, nil, "changed", text))
			wantCode(t, err, "not_a_draft")
			_, err = alice.Send(ctx, sent.ID)
			wantCode(t, err, "not_a_draft")
			// Read flag.
			if m, err := bob.SetSeen(ctx, in[0].ID, true); err != nil || !m.Seen {
				t.Fatalf("seen: %v %+v", err, m)
			}
		})
	}
}

func TestRangeAndETag(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	body := make([]byte, 200000)
	rand.Read(body)
	up := upload(t, alice, body)
	text := upload(t, alice, []byte("x"))
	dr, err := alice.CreateDraft(ctx, compose(t, "", []string{"alice@a.test"}, nil, nil, "self", text, up))
	if err != nil {
		t.Fatal(err)
	}
	url := d.URL + "/api/v1/messages/" + dr.ID + "/resources/" + string(up.ContentID)
	get := func(h map[string]string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := alice.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, b := get(map[string]string{"Range": "bytes=65530-65545"})
	if resp.StatusCode != 206 || !bytes.Equal(b, body[65530:65546]) {
		t.Fatalf("range: %d %d bytes", resp.StatusCode, len(b))
	}
	resp, b = get(nil)
	if resp.StatusCode != 200 || !bytes.Equal(b, body) || resp.Header.Get("ETag") != `"`+string(up.ContentID)+`"` {
		t.Fatalf("full: %d etag %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") {
		t.Fatalf("Content-Disposition %q", cd)
	}
	resp, _ = get(map[string]string{"If-None-Match": `"` + string(up.ContentID) + `"`})
	if resp.StatusCode != 304 {
		t.Fatalf("If-None-Match: %d", resp.StatusCode)
	}
	resp, _ = get(map[string]string{"Range": "bytes=300000-"})
	if resp.StatusCode != 416 {
		t.Fatalf("unsatisfiable range: %d", resp.StatusCode)
	}
}

func TestBccHidden(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	bob := d.AddUser(t, "bob@a.test")
	carol := d.AddUser(t, "carol@a.test")
	dave := d.AddUser(t, "dave@a.test")
	text := upload(t, alice, []byte("secret plans"))
	dr, err := alice.CreateDraft(ctx, compose(t, "", []string{"bob@a.test"}, nil, []string{"carol@a.test", "Dave <dave@a.test>"}, "plans", text))
	if err != nil {
		t.Fatal(err)
	}
	sent, err := alice.Send(ctx, dr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(sent.Bcc) != 2 {
		t.Fatalf("the sender's copy keeps every Bcc: %v", sent.Bcc)
	}
	check := func(c *client.Client, wantBcc []string) {
		t.Helper()
		in := inbox(t, c)
		if len(in) != 1 {
			t.Fatalf("inbox %+v", in)
		}
		m, err := c.Get(ctx, in[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(m.Bcc, wantBcc) {
			t.Fatalf("Bcc %v, want %v", m.Bcc, wantBcc)
		}
		for _, other := range []string{"carol@a.test", "dave@a.test"} {
			if !slices.Contains(wantBcc, other) && !slices.ContainsFunc(wantBcc, func(s string) bool { return strings.Contains(s, other) }) && bytes.Contains(m.Placeholder, []byte(other)) {
				t.Fatalf("copy reveals %s: %s", other, m.Placeholder)
			}
		}
		pm, err := placeholder.Parse(m.Placeholder, placeholder.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		if err := placeholder.VerifyDigests(pm); err != nil {
			t.Fatalf("copy's digests: %v", err)
		}
	}
	check(bob, nil)
	check(carol, []string{"carol@a.test"})
	check(dave, []string{"Dave <dave@a.test>"})
}

func TestAccessControl(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	bob := d.AddUser(t, "bob@a.test")
	carol := d.AddUser(t, "carol@a.test")
	secret := upload(t, alice, []byte("alice's secret"))
	text := upload(t, alice, []byte("hi"))
	dr, err := alice.CreateDraft(ctx, compose(t, "", []string{"bob@a.test"}, nil, nil, "s", text, secret))
	if err != nil {
		t.Fatal(err)
	}
	// Carol knows the digest and the draft's id; neither grants her anything.
	_, _, err = carol.Download(ctx, dr.ID, secret.ContentID)
	wantCode(t, err, "not_found")
	_, err = carol.Get(ctx, dr.ID)
	notYours := err
	_, err = carol.Get(ctx, "mdoesnotexist")
	if notYours == nil || err == nil || notYours.Error() != err.Error() {
		t.Fatalf("not yours %v vs missing %v", notYours, err)
	}
	// A message of Carol's own that does not reference it grants nothing either.
	ctext := upload(t, carol, []byte("mine"))
	cdr, err := carol.CreateDraft(ctx, compose(t, "", []string{"bob@a.test"}, nil, nil, "c", ctext))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err1 := carol.Download(ctx, cdr.ID, secret.ContentID)
	_, _, err2 := carol.Download(ctx, cdr.ID, resource.IDOf([]byte("nothing")))
	if err1 == nil || err2 == nil || err1.Error() != err2.Error() {
		t.Fatalf("unreferenced %v vs missing %v", err1, err2)
	}
	// Nor can Carol put Alice's resource in a message of hers.
	_, err = carol.CreateDraft(ctx, compose(t, "", []string{"bob@a.test"}, nil, nil, "c", ctext, secret))
	wantCode(t, err, "unknown_resource")
	// Bob, once sent to, can read it; then he may reuse it in a message of his.
	if _, err := alice.Send(ctx, dr.ID); err != nil {
		t.Fatal(err)
	}
	in := inbox(t, bob)
	if got := download(t, bob, in[0].ID, secret.ContentID); string(got) != "alice's secret" {
		t.Fatalf("bob got %q", got)
	}
	btext := upload(t, bob, []byte("fwd"))
	if _, err := bob.CreateDraft(ctx, compose(t, "", []string{"carol@a.test"}, nil, nil, "fwd", btext, secret)); err != nil {
		t.Fatalf("bob reusing a resource he holds: %v", err)
	}
}

func TestDedup(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	bob := d.AddUser(t, "bob@a.test")
	b := bytes.Repeat([]byte("same bytes "), 10000)
	upload(t, alice, b)
	n := len(testenv.Files(t, filepath.Join(d.Dir, "resources")))
	upload(t, bob, b)
	upload(t, alice, b)
	if m := len(testenv.Files(t, filepath.Join(d.Dir, "resources"))); m != n {
		t.Fatalf("files %d -> %d: identical uploads must share one copy", n, m)
	}
}

func TestSync(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	bob := d.AddUser(t, "bob@a.test")
	l, err := bob.List(ctx, mailbox.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cursor := l.Cursor
	ch, err := bob.Changes(ctx, cursor, 0)
	if err != nil || len(ch.Changes) != 0 || ch.More {
		t.Fatalf("no changes yet: %v %+v", err, ch)
	}
	text := upload(t, alice, []byte("one"))
	for i := 0; i < 3; i++ {
		dr, err := alice.CreateDraft(ctx, compose(t, "", []string{"bob@a.test"}, nil, nil, fmt.Sprint("n", i), text))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Send(ctx, dr.ID); err != nil {
			t.Fatal(err)
		}
	}
	ch, err = bob.Changes(ctx, cursor, 2)
	if err != nil || len(ch.Changes) != 2 || !ch.More {
		t.Fatalf("first page: %v %+v", err, ch)
	}
	for _, c := range ch.Changes {
		if c.Kind != "created" || c.Folder != "inbox" || c.Message == nil {
			t.Fatalf("change %+v", c)
		}
	}
	ch2, err := bob.Changes(ctx, ch.Cursor, 0)
	if err != nil || len(ch2.Changes) != 1 || ch2.More || ch2.Changes[0].Message.Subject != "n2" {
		t.Fatalf("second page: %v %+v", err, ch2)
	}
	// Alice's drafts and sends are not Bob's business.
	for _, c := range append(ch.Changes, ch2.Changes...) {
		if c.Folder != "inbox" {
			t.Fatalf("bob sees %+v", c)
		}
	}
	if err := bob.Delete(ctx, ch2.Changes[0].ID); err != nil {
		t.Fatal(err)
	}
	ch3, err := bob.Changes(ctx, ch2.Cursor, 0)
	if err != nil || len(ch3.Changes) != 2 || ch3.Changes[0].Kind != "deleted" || ch3.Changes[0].Message != nil ||
		ch3.Changes[1].Folder != "trash" || ch3.Changes[1].Kind != "created" || ch3.Changes[1].Message == nil {
		t.Fatalf("delete (to trash): %v %+v", err, ch3)
	}
	if err := bob.Purge(ctx, ch2.Changes[0].ID); err != nil {
		t.Fatal(err)
	}
	ch4, err := bob.Changes(ctx, ch3.Cursor, 0)
	if err != nil || len(ch4.Changes) != 1 || ch4.Changes[0].Kind != "deleted" || ch4.Changes[0].Folder != "trash" {
		t.Fatalf("purge: %v %+v", err, ch4)
	}
	_, err = bob.Changes(ctx, "999999999", 0)
	wantCode(t, err, "resync_required")
	_, err = bob.Changes(ctx, "abc", 0)
	wantCode(t, err, "bad_cursor")
	if _, err := d.Server.Meta.PruneChanges(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, err = bob.Changes(ctx, cursor, 0)
	wantCode(t, err, "resync_required")
}

func TestGarbageCollection(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	d := testenv.Start(t, "a.test", testenv.Options{Clock: clock})
	alice := d.AddUser(t, "alice@a.test")
	kept := upload(t, alice, []byte("referenced by a draft"))
	gone := upload(t, alice, []byte("uploaded and forgotten"))
	if _, err := alice.CreateDraft(ctx, compose(t, "", []string{"alice@a.test"}, nil, nil, "k", kept)); err != nil {
		t.Fatal(err)
	}
	svc := d.Server.Mailbox
	// Within the grace period nothing goes.
	if n, err := svc.CollectGarbage(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("early GC removed %d: %v", n, err)
	}
	now = now.Add(8 * 24 * time.Hour)
	n, err := svc.CollectGarbage(ctx, time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("GC removed %d: %v", n, err)
	}
	if _, err := d.Server.Store.Stat(ctx, gone.ContentID); !errors.Is(err, resource.ErrNotFound) {
		t.Fatalf("forgotten upload still there: %v", err)
	}
	if _, err := d.Server.Store.Stat(ctx, kept.ContentID); err != nil {
		t.Fatalf("referenced resource removed: %v", err)
	}
}

// TestBadInput: every refusal is a 4xx JSON error with a stable code, and
// changes nothing: no change logged, no file left.
func TestBadInput(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{MaxUpload: 1 << 20})
	other := testenv.Start(t, "b.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	d.AddUser(t, "bob@a.test")
	mallory := other.AddUser(t, "mallory@b.test")
	text := upload(t, alice, []byte("body"))
	good := compose(t, "", []string{"bob@a.test"}, nil, nil, "hi", text)
	dr, err := alice.CreateDraft(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	withHeader := func(name, value string) []byte {
		m, err := placeholder.Parse(good, placeholder.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		m.Header.SetString(name, value)
		return m.Canonical()
	}
	raw := func(method, path, token string, body io.Reader, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest(method, d.URL+path, body)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := alice.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e errs.Body
		if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s %s: %d answer is not a JSON error: %q", method, path, resp.StatusCode, b)
		}
		return resp.StatusCode, e.Error.Code
	}
	expired := d.Token(t, "alice@a.test", -time.Minute)
	toNobody, err := alice.CreateDraft(ctx, compose(t, "", []string{"nobody@a.test"}, nil, nil, "x", text))
	if err != nil {
		t.Fatal(err)
	}
	toBobAndNobody, err := alice.CreateDraft(ctx, compose(t, "", []string{"bob@a.test"}, []string{"nobody@a.test"}, nil, "x", text))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 17<<10)
	cases := []struct {
		name   string
		do     func() (int, string)
		status int
		code   string
	}{
		{"malformed JSON", func() (int, string) {
			return raw("POST", "/api/v1/messages", alice.Token, strings.NewReader(`{"headers": {`), nil)
		}, 400, "malformed_json"},
		{"unknown member", func() (int, string) {
			return raw("POST", "/api/v1/messages", alice.Token, strings.NewReader(`{"evil":1,"headers":{"Content-Type":"multipart/mixed"},"parts":[]}`), nil)
		}, 400, "unknown_member"},
		{"wrong header type", func() (int, string) {
			return raw("POST", "/api/v1/messages", alice.Token, strings.NewReader(`{"headers":{"Subject":42,"Content-Type":"multipart/mixed"},"parts":[]}`), nil)
		}, 400, "wrong_type"},
		{"Content-ID of no resource of the sender", func() (int, string) {
			stranger := mailbox.Upload{ContentID: resource.IDOf([]byte("never uploaded")), Size: 14}
			return raw("POST", "/api/v1/messages", alice.Token, bytes.NewReader(compose(t, "", []string{"bob@a.test"}, nil, nil, "x", text, stranger)), nil)
		}, 400, "unknown_resource"},
		{"declared size differs from the resource", func() (int, string) {
			lie := mailbox.Upload{ContentID: text.ContentID, Size: text.Size + 1}
			return raw("POST", "/api/v1/messages", alice.Token, bytes.NewReader(compose(t, "", []string{"bob@a.test"}, nil, nil, "x", lie)), nil)
		}, 400, "size_mismatch"},
		{"upload digest mismatch", func() (int, string) {
			return raw("POST", "/api/v1/resources?content_id="+string(resource.IDOf([]byte("other"))), alice.Token, strings.NewReader("these bytes"), nil)
		}, 400, "digest_mismatch"},
		{"upload over the limit", func() (int, string) {
			return raw("POST", "/api/v1/resources", alice.Token, io.LimitReader(zeros{}, 2<<20), nil)
		}, 413, "too_large"},
		{"non-base64url content_id", func() (int, string) {
			return raw("POST", "/api/v1/resources?content_id=abc%2B%2F", alice.Token, strings.NewReader("x"), nil)
		}, 400, "bad_content_id"},
		{"path traversal in resource id", func() (int, string) {
			return raw("GET", "/api/v1/messages/"+dr.ID+"/resources/..%2F..%2Fmeta.db", alice.Token, nil, nil)
		}, 404, "not_found"},
		{"padded resource id", func() (int, string) {
			return raw("GET", "/api/v1/messages/"+dr.ID+"/resources/"+string(text.ContentID[:42])+"=", alice.Token, nil, nil)
		}, 404, "not_found"},
		{"path traversal in message id", func() (int, string) {
			return raw("GET", "/api/v1/messages/..%2F..%2Fetc", alice.Token, nil, nil)
		}, 404, "not_found"},
		{"oversize header value", func() (int, string) {
			return raw("POST", "/api/v1/messages", alice.Token, bytes.NewReader(withHeader("Subject", big)), nil)
		}, 400, "header_too_large"},
		{"oversize document", func() (int, string) {
			return raw("POST", "/api/v1/messages", alice.Token, io.LimitReader(zeros{}, 2<<20), nil)
		}, 413, "document_too_large"},
		{"client-set Date", func() (int, string) {
			return raw("POST", "/api/v1/messages", alice.Token, bytes.NewReader(withHeader("Date", "Mon, 02 Jan 2006 15:04:05 +0000")), nil)
		}, 400, "server_owned_header"},
		{"client-set Message-ID", func() (int, string) {
			return raw("POST", "/api/v1/messages", alice.Token, bytes.NewReader(withHeader("Message-ID", "<mine@a.test>")), nil)
		}, 400, "server_owned_header"},
		{"From not the user's", func() (int, string) {
			return raw("POST", "/api/v1/messages", alice.Token, bytes.NewReader(withHeader("From", "bob@a.test")), nil)
		}, 403, "from_not_yours"},
		{"unknown local recipient", func() (int, string) {
			return raw("POST", "/api/v1/messages/"+toNobody.ID+"/send", alice.Token, nil, nil)
		}, 400, "unknown_recipient"},
		{"one unknown recipient among good ones delivers to none", func() (int, string) {
			return raw("POST", "/api/v1/messages/"+toBobAndNobody.ID+"/send", alice.Token, nil, nil)
		}, 400, "unknown_recipient"},
		{"missing token", func() (int, string) { return raw("GET", "/api/v1/messages", "", nil, nil) }, 401, "missing_token"},
		{"expired token", func() (int, string) { return raw("GET", "/api/v1/messages", expired, nil, nil) }, 401, "token_expired"},
		{"foreign token", func() (int, string) { return raw("GET", "/api/v1/messages", mallory.Token, nil, nil) }, 401, "invalid_token"},
		{"junk token", func() (int, string) { return raw("GET", "/api/v1/messages", "' OR 1=1--", nil, nil) }, 401, "invalid_token"},
		{"token in the URL is ignored", func() (int, string) {
			return raw("GET", "/api/v1/messages?access_token="+alice.Token, "", nil, nil)
		}, 401, "missing_token"},
		{"bad folder", func() (int, string) { return raw("GET", "/api/v1/messages?folder=spam", alice.Token, nil, nil) }, 400, "bad_folder"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot(t, d)
			status, code := c.do()
			if status != c.status || code != c.code {
				t.Fatalf("got %d %s, want %d %s", status, code, c.status, c.code)
			}
			if after := snapshot(t, d); !before.equal(after) {
				t.Fatalf("state changed: %+v -> %+v", before, after)
			}
		})
	}
	if in := inbox(t, d.Client(t, d.Token(t, "bob@a.test", 0))); len(in) != 0 {
		t.Fatalf("refused sends delivered %d messages", len(in))
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestTruncatedUpload sends a body shorter than its Content-Length and hangs
// up: nothing is stored, no temporary file survives.
func TestTruncatedUpload(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	before := snapshot(t, d)
	pool, err := tlsca.LoadPool(d.CA)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(d.URL, "https://"), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /api/v1/resources HTTP/1.1\r\nHost: a.test\r\nAuthorization: Bearer %s\r\nContent-Length: 1000000\r\n\r\n", alice.Token)
	conn.Write(bytes.Repeat([]byte("y"), 70000))
	time.Sleep(100 * time.Millisecond)
	conn.Close()
	// The server notices the hang-up; give it a moment, then check.
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := snapshot(t, d)
		if before.equal(after) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("truncated upload left %v", after.files)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ok, _ := d.Server.Meta.Referenced(ctx, resource.IDOf(bytes.Repeat([]byte("y"), 70000))); ok {
		t.Fatal("truncated upload recorded")
	}
}

// TestSameAPIInProcess runs a scenario against *mailbox.Service directly,
// to hold the in-process and HTTP implementations of mailbox.API together.
func TestSameAPIInProcess(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	u, err := d.Server.Meta.UserByAddress(ctx, "alice@a.test")
	if err != nil {
		t.Fatal(err)
	}
	actx := authCtx(u)
	svc := d.Server.Mailbox
	up, err := svc.Upload(actx, strings.NewReader("in process"), mailbox.UploadOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	dr, err := svc.CreateDraft(actx, compose(t, "", []string{"alice@a.test"}, nil, nil, "self", up))
	if err != nil {
		t.Fatal(err)
	}
	viaHTTP, err := alice.Get(ctx, dr.ID)
	if err != nil {
		t.Fatal(err)
	}
	direct, err := svc.Get(actx, dr.ID)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(viaHTTP)
	b, _ := json.Marshal(direct)
	if !bytes.Equal(a, b) {
		t.Fatalf("HTTP and in-process views differ:\n%s\n%s", a, b)
	}
	_, err = svc.Get(ctx, dr.ID) // no principal
	wantCode(t, err, "missing_token")
	_ = sha256.New
	_ = meta.Inbox
}

// TestZeroLengthAndConcurrentUploads: the empty resource is a resource
// (SECURITY.md: accept), and identical uploads at once all succeed with one
// stored copy.
func TestZeroLengthAndConcurrentUploads(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	empty := upload(t, alice, nil)
	if empty.ContentID != resource.EmptyID || empty.Size != 0 {
		t.Fatalf("empty upload: %+v", empty)
	}
	if _, err := alice.CreateDraft(ctx, compose(t, "", []string{"alice@a.test"}, nil, nil, "empty", empty)); err != nil {
		t.Fatalf("a draft with an empty body: %v", err)
	}
	data := bytes.Repeat([]byte("concurrent "), 50000)
	errc := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			up, err := alice.Upload(ctx, bytes.NewReader(data), mailbox.UploadOptions{Size: int64(len(data)), Digest: resource.IDOf(data)})
			if err == nil && up.ContentID != resource.IDOf(data) {
				err = fmt.Errorf("got %s", up.ContentID)
			}
			errc <- err
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, f := range testenv.Files(t, filepath.Join(d.Dir, "resources")) {
		// The blob itself, not its chunk-sum sidecar (resource/fsstore).
		if strings.Contains(f, string(resource.IDOf(data))) && !strings.HasSuffix(f, ".sums") {
			n++
		}
		if strings.HasPrefix(f, "tmp/") {
			t.Errorf("temporary file left: %s", f)
		}
	}
	if n != 1 {
		t.Fatalf("%d stored copies, want 1", n)
	}
}
