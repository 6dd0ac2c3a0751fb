package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/mailbox"
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
