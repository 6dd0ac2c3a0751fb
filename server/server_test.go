package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/server"
	"github.com/pullmail/pullmail/testenv"
)

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	if _, err := alice.List(context.Background(), mailbox.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, alice.HTTP, d.URL+"/healthz"); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("healthz: %d %s", code, body)
	}
	code, body := get(t, alice.HTTP, d.URL+"/metrics")
	if code != 200 || !strings.Contains(body, "pullmail_http_requests_total") || !strings.Contains(body, "pullmail_sends_total") {
		t.Fatalf("metrics: %d %.200s", code, body)
	}
	if code, body := get(t, alice.HTTP, d.URL+"/openapi.json"); code != 200 || !strings.HasPrefix(body, "{") || !strings.Contains(body, `"3.1`) {
		t.Fatalf("openapi: %d %.100s", code, body)
	}
	if code, body := get(t, alice.HTTP, d.URL+"/nowhere"); code != 404 || !strings.Contains(body, "no_route") {
		t.Fatalf("unknown path: %d %s", code, body)
	}
}

// TestMetricsLoopbackOnly: /metrics is for the machine itself unless the
// operator makes it public.
func TestMetricsLoopbackOnly(t *testing.T) {
	for _, public := range []bool{false, true} {
		srv, err := server.Open(context.Background(), server.Config{DataDir: t.TempDir(), Domain: "a.test", MetricsPublic: public})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.RemoteAddr = "192.0.2.7:5555" // a documentation address: no traffic is sent
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if want := map[bool]int{false: 404, true: 200}[public]; rec.Code != want {
			t.Fatalf("public=%v: %d, want %d", public, rec.Code, want)
		}
	}
}

// TestDataDirOneDomain: a data directory serves one domain for life.
func TestDataDirOneDomain(t *testing.T) {
	dir := t.TempDir()
	srv, err := server.Open(context.Background(), server.Config{DataDir: dir, Domain: "a.test"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if _, err := server.Open(context.Background(), server.Config{DataDir: dir, Domain: "b.test"}); err == nil || !strings.Contains(err.Error(), "a.test") {
		t.Fatalf("another domain: %v", err)
	}
	srv, err = server.Open(context.Background(), server.Config{DataDir: dir})
	if err != nil || srv.Domain != "a.test" {
		t.Fatalf("reopen without --domain: %v", err)
	}
	srv.Close()
	if _, err := server.Open(context.Background(), server.Config{DataDir: dir, EncryptAtRest: true}); err == nil {
		t.Fatal("a plain store opened as encrypted")
	}
}

// TestMTAAssertion walks this domain's MTA through the first leg of the
// Cross-Domain Authorization Grant on a running server: a send grant from
// the mailbox, a private_key_jwt client assertion with the server's own MTA
// key, a DPoP proof, and an assertion back whose eh binds the headers.
func TestMTAAssertion(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	srv := d.Server
	msgid := "<b07d0cdf-c6f4-4f67-b24c-cc847a4c2df4@a.test>"
	grant, err := srv.Authz.IssueSendGrant("alice@a.test", srv.MTAClientID(), msgid)
	if err != nil {
		t.Fatal(err)
	}
	var h placeholder.Header
	h.SetString(placeholder.HMessageID, msgid)
	h.SetString(placeholder.HFrom, "Alice <alice@a.test>")
	h.SetString(placeholder.HRecipientsDigest, resource.IDOf([]byte("recipients")).ContentID())
	h.SetString(placeholder.HBodyDigest, resource.IDOf([]byte("body")).ContentID())
	ehl := []string{"Message-ID", "From", "Recipients-Digest", "Body-Digest"}
	hb, _ := json.Marshal(h)
	eb, _ := json.Marshal(ehl)
	dk, err := dpop.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tokenURL := d.URL + authz.PathToken
	exchange := func(from string) (int, map[string]any) {
		ca, err := srv.MTAKey.Assertion(srv.MTAClientID(), tokenURL, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		proof, err := dk.Proof("POST", tokenURL, "", "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		hh := h.Clone()
		hh.SetString(placeholder.HFrom, from)
		hb, _ = json.Marshal(hh)
		form := url.Values{"grant_type": {federation.GrantTokenExch}, "client_id": {srv.MTAClientID()},
			"client_assertion_type": {federation.ClientAssertionJB}, "client_assertion": {ca},
			"subject_token": {grant}, "subject_token_type": {federation.TokenTypeAccess},
			"requested_token_type": {federation.TokenTypeJWT}, "audience": {"b.test"}, "scope": {"internet_mail"},
			"envelope_headers": {string(hb)}, "ehl": {string(eb)}}
		req, _ := http.NewRequest("POST", tokenURL, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("DPoP", proof)
		resp, err := alice.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	status, out := exchange("Alice <alice@a.test>")
	if status != 200 || out["issued_token_type"] != federation.TokenTypeJWT || out["token_type"] != "N_A" {
		t.Fatalf("exchange: %d %v", status, out)
	}
	payload, _, err := srv.Keys.Verify(out["access_token"].(string), keys.Expect{Typ: federation.TypAssertion})
	if err != nil {
		t.Fatal(err)
	}
	var a federation.Claims
	json.Unmarshal(payload, &a)
	eht, _ := placeholder.EHT(h, ehl)
	if a.Issuer != d.URL || a.Subject != "alice@a.test" || len(a.Audience) != 1 || a.Audience[0] != "b.test" ||
		a.AZP != "mta@a.test" || a.Cnf == nil || a.Cnf.JKT != dk.Thumbprint() || a.EH == nil || a.EH.EHT != eht || a.MessageID != msgid {
		t.Fatalf("assertion claims: %+v", a)
	}
	// The From address must be the author's.
	if status, out := exchange("Bob <bob@a.test>"); status != 400 || out["error"] != "invalid_request" {
		t.Fatalf("forged From: %d %v", status, out)
	}
	// The built-in clients are registered, the webmail with this server's URL.
	wm, err := srv.Meta.Client(context.Background(), server.WebmailClientID)
	if err != nil || !wm.Public || len(wm.RedirectURIs) != 1 || wm.RedirectURIs[0] != d.URL+server.WebmailCallback {
		t.Fatalf("webmail client: %v %+v", err, wm)
	}
}

// TestMailboxMetadata: the document at discovery.PathMailbox is what
// discovery accepts, with this domain's values (docs/PROTOCOL.md §11.1).
func TestMailboxMetadata(t *testing.T) {
	d := testenv.Start(t, "b.test", testenv.Options{})
	alice := d.AddUser(t, "alice@b.test")
	resp, err := alice.HTTP.Get(d.URL + discovery.PathMailbox)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	m, err := discovery.ParseMailboxMetadata(body)
	if err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	srv := d.Server
	want := discovery.MailboxMetadata{
		Domain: "b.test", URL: srv.PublicURL(),
		InboundEndpoint: srv.PublicURL() + "/federation/v1/messages",
		FetchEndpoint:   srv.PublicURL() + "/federation/v1/resources",
		MTAClientID:     "mta@b.test", MTAJWKS: m.MTAJWKS,
	}
	if m.MailboxMetadata.Domain != want.Domain || m.URL != want.URL || m.InboundEndpoint != want.InboundEndpoint ||
		m.FetchEndpoint != want.FetchEndpoint || m.MTAClientID != want.MTAClientID {
		t.Errorf("metadata %+v, want %+v", m.MailboxMetadata, want)
	}
	if m.URL != d.URL {
		t.Errorf("url %s, want the public URL %s", m.URL, d.URL)
	}
	if string(m.MTAJWKS) != string(srv.MTAKey.JWKS()) || len(m.MTAKeys.Keys) != 1 {
		t.Errorf("mta_jwks %s, want %s", m.MTAJWKS, srv.MTAKey.JWKS())
	}

	req, _ := http.NewRequest(http.MethodPost, d.URL+discovery.PathMailbox, strings.NewReader("{}"))
	resp, err = alice.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

// TestFederationRoutes: the receiving side of federation is mounted and
// answers as docs/PROTOCOL.md §11 says to a stranger.
func TestFederationRoutes(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	resp, err := alice.HTTP.Post(d.URL+"/federation/v1/messages", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(body), "invalid_token") {
		t.Fatalf("push without a token: %d %s", resp.StatusCode, body)
	}
	cid := resource.IDOf([]byte("anything"))
	resp, err = alice.HTTP.Get(d.URL + "/federation/v1/resources/" + string(cid))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(body), "not_found") {
		t.Fatalf("fetch without a token: %d %s", resp.StatusCode, body)
	}
}
