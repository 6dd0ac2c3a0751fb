package discovery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/errs"
)

// mailboxDoc is a valid document for domain at base.
func mailboxDoc(t testing.TB, domain, base string, jwks []byte) MailboxMetadata {
	return MailboxMetadata{
		Domain: domain, URL: base,
		InboundEndpoint: base + "/federation/inbound", FetchEndpoint: base + "/federation/fetch",
		MTAClientID: "mta@" + domain, MTAJWKS: jwks,
	}
}

// serveMailbox serves MailboxHandler for domain on host, the document
// edited by edit, and makes the SRV record of domain point there.
func (e *env) serveMailbox(domain, host string, jwks []byte, edit func(*MailboxMetadata)) *atomic.Int64 {
	var hits atomic.Int64
	port := e.serve(host, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != PathMailbox {
			http.NotFound(w, r)
			return
		}
		hits.Add(1)
		doc := mailboxDoc(e.t, domain, "https://"+r.Host, jwks)
		if edit == nil {
			MailboxHandler(doc).ServeHTTP(w, r)
			return
		}
		// A bad document, which MailboxHandler would not publish.
		edit(&doc)
		json.NewEncoder(w).Encode(doc)
	}))
	e.dns.AddSRV("_federizer._rs._tcp."+domain, 1, 1, port, host, 3600)
	return &hits
}

func TestMailbox(t *testing.T) {
	e := newEnv(t)
	jwks := jwksOf(t, newKey(t))
	hits := e.serveMailbox("b.test", "mbx.b.test", jwks, nil)
	c := e.client()
	m, err := c.Mailbox(ctx, "b.test")
	if err != nil {
		t.Fatal(err)
	}
	if m.Domain != "b.test" || !strings.HasPrefix(m.URL, "https://mbx.b.test:") || m.MTAClientID != "mta@b.test" ||
		len(m.MTAKeys.Keys) != 1 || m.InboundEndpoint != m.URL+"/federation/inbound" {
		t.Errorf("mailbox %+v", m.MailboxMetadata)
	}

	// authz.Remote: the MTA's keys come from the mailbox metadata.
	d, got, err := c.ClientKeys(ctx, "mta@b.test")
	if err != nil || d != "b.test" || !bytes.Equal(got, jwks) {
		t.Errorf("ClientKeys = %q, %s, %v", d, got, err)
	}
	if hits.Load() != 1 {
		t.Errorf("%d requests, want 1 (cached)", hits.Load())
	}
	// Cached for the handler's max-age (300 s).
	e.clock.Advance(299 * time.Second)
	c.Mailbox(ctx, "b.test")
	e.clock.Advance(time.Second)
	c.Mailbox(ctx, "b.test")
	if hits.Load() != 2 {
		t.Errorf("%d requests after max-age, want 2", hits.Load())
	}
	// RefreshKeys also forgets the mailbox (client assertions use its keys).
	e.dns.AddSRV("_federizer._as._tcp.b.test", 1, 1, e.serve("as.b.test", newFakeAS(t)), "as.b.test", 3600)
	c.RefreshKeys(ctx, "b.test")
	c.ClientKeys(ctx, "mta@b.test")
	if hits.Load() != 3 {
		t.Errorf("%d requests after RefreshKeys, want 3", hits.Load())
	}

	for _, id := range []string{"alice@b.test", "mta@B.test", "mta@", "mta@b.test/x", "b.test"} {
		_, _, err := c.ClientKeys(ctx, id)
		wantErr(t, err, "bad_client_id", errs.Invalid)
	}
	_, _, err = c.ClientKeys(ctx, "mta@nowhere.test")
	wantErr(t, err, "no_srv_record", errs.NotFound)
}

func TestMailboxRefusals(t *testing.T) {
	jwks := jwksOf(t, newKey(t))
	for _, tc := range []struct {
		name string
		edit func(*MailboxMetadata)
		code string
	}{
		{"another domain", func(m *MailboxMetadata) {
			m.Domain, m.MTAClientID = "evil.test", "mta@evil.test"
		}, "domain_mismatch"},
		{"another url", func(m *MailboxMetadata) {
			m.URL = "https://evil.test"
			m.InboundEndpoint, m.FetchEndpoint = "https://evil.test/in", "https://evil.test/fetch"
		}, "bad_mailbox_metadata"},
		{"endpoint on another host", func(m *MailboxMetadata) { m.FetchEndpoint = "https://evil.test/fetch" }, "bad_mailbox_metadata"},
		{"http endpoint", func(m *MailboxMetadata) {
			m.InboundEndpoint = "http" + strings.TrimPrefix(m.InboundEndpoint, "https")
		}, "bad_mailbox_metadata"},
		{"another MTA", func(m *MailboxMetadata) { m.MTAClientID = "mta@evil.test" }, "bad_mailbox_metadata"},
		{"private key", func(m *MailboxMetadata) {
			m.MTAJWKS = json.RawMessage(strings.Replace(string(m.MTAJWKS), `"kty"`, `"d":"AAAA","kty"`, 1))
		}, "bad_mailbox_metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.serveMailbox("b.test", "mbx.b.test", jwks, tc.edit)
			_, err := e.client().Mailbox(ctx, "b.test")
			wantErr(t, err, tc.code, errs.Invalid)
		})
	}
}

func TestParseMailboxMetadata(t *testing.T) {
	good, err := os.ReadFile("testdata/mailbox.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMailboxMetadata(good)
	if err != nil {
		t.Fatal(err)
	}
	if m.Domain != "a.test" || m.URL != "https://mail.a.test" || len(m.MTAKeys.Keys) != 1 {
		t.Errorf("parsed %+v", m.MailboxMetadata)
	}
	replace := func(old, new string) string {
		if !strings.Contains(string(good), old) {
			t.Fatalf("%q not in the vector", old)
		}
		return strings.Replace(string(good), old, new, 1)
	}
	for _, tc := range []struct{ name, doc string }{
		{"not an object", `[]`},
		{"duplicate member", replace(`"domain": "a.test"`, `"domain": "a.test", "Domain": "evil.test"`)},
		{"upper-case domain", replace(`"domain": "a.test"`, `"domain": "A.test"`)},
		{"http url", replace(`"url": "https://mail.a.test"`, `"url": "http://mail.a.test"`)},
		{"url with a slash", replace(`"url": "https://mail.a.test"`, `"url": "https://mail.a.test/"`)},
		{"url with :443", replace(`"url": "https://mail.a.test"`, `"url": "https://mail.a.test:443"`)},
		{"url with a query", replace(`"url": "https://mail.a.test"`, `"url": "https://mail.a.test?x"`)},
		{"endpoint with a query", replace(`/federation/fetch"`, `/federation/fetch?x=1"`)},
		{"endpoint with user info", replace(`"https://mail.a.test/federation/fetch"`, `"https://u@mail.a.test/federation/fetch"`)},
		{"no mta_jwks", replace(`"mta_jwks"`, `"other"`)},
		{"null mta_jwks", strings.Replace(string(good), `"mta_jwks": {`, `"mta_jwks": null, "x": {`, 1)},
		{"trailing data", string(good) + "{}"},
		{"too large", string(good[:len(good)-2]) + `, "pad": "` + strings.Repeat("x", MaxBody) + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseMailboxMetadata([]byte(tc.doc)); err == nil {
				t.Fatal("accepted")
			} else if k := errs.KindOf(err); k != errs.Invalid && k != errs.TooLarge {
				t.Fatalf("kind %v: %v", k, err)
			}
		})
	}
}

func TestMailboxHandler(t *testing.T) {
	good, _ := os.ReadFile("testdata/mailbox.json")
	m, err := ParseMailboxMetadata(good)
	if err != nil {
		t.Fatal(err)
	}
	bad := m.MailboxMetadata
	bad.MTAClientID = "mta@evil.test"
	e := newEnv(t)
	c := e.client()
	for _, tc := range []struct {
		name   string
		doc    MailboxMetadata
		method string
		status int
	}{
		{"GET", m.MailboxMetadata, http.MethodGet, http.StatusOK},
		{"HEAD", m.MailboxMetadata, http.MethodHead, http.StatusOK},
		{"POST", m.MailboxMetadata, http.MethodPost, http.StatusBadRequest},
		{"bad document not published", bad, http.MethodGet, http.StatusInternalServerError},
	} {
		port := e.serve("mail.a.test", MailboxHandler(tc.doc))
		req, _ := http.NewRequest(tc.method, fmt.Sprintf("https://mail.a.test:%d%s", port, PathMailbox), nil)
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %s", tc.name, resp.Status)
		}
		if tc.status == http.StatusOK && tc.method == http.MethodGet {
			if _, err := ParseMailboxMetadata(body); err != nil || resp.Header.Get("Cache-Control") != "public, max-age=300" {
				t.Errorf("%s: %v, Cache-Control %q", tc.name, err, resp.Header.Get("Cache-Control"))
			}
		}
		if tc.status == http.StatusInternalServerError && bytes.Contains(body, []byte("evil")) {
			t.Errorf("%s: published %s", tc.name, body)
		}
	}
}

func FuzzParseMailboxMetadata(f *testing.F) {
	good, err := os.ReadFile("testdata/mailbox.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"domain":"a.test","domain":"b.test"}`))
	f.Add([]byte(`{"mta_jwks":{"keys":[{"kty":"EC","d":"x"}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMailboxMetadata(data)
		if err != nil {
			if _, ok := err.(*errs.Error); !ok {
				t.Fatalf("error %T is not *errs.Error: %v", err, err)
			}
			return
		}
		// What is accepted keeps its promises and survives a round trip.
		if m.MTAClientID != "mta@"+m.Domain || len(m.MTAKeys.Keys) == 0 || !strings.HasPrefix(m.URL, "https://") ||
			!strings.HasPrefix(m.InboundEndpoint, "https://") || !strings.HasPrefix(m.FetchEndpoint, "https://") {
			t.Fatalf("accepted %+v", m.MailboxMetadata)
		}
		again, err := json.Marshal(m.MailboxMetadata)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseMailboxMetadata(again)
		if err != nil {
			t.Fatalf("re-encoded document refused: %v\n%s", err, again)
		}
		if m2.Domain != m.Domain || m2.URL != m.URL || m2.FetchEndpoint != m.FetchEndpoint {
			t.Fatalf("round trip changed %+v to %+v", m.MailboxMetadata, m2.MailboxMetadata)
		}
	})
}
