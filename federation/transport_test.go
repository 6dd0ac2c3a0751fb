package federation_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/federation"
)

// echo answers what a handler saw of a request.
func echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Seen", strings.Join([]string{r.Method, r.Host, r.RequestURI, r.Header.Get("Content-Type"),
		r.Header.Get("Authorization"), r.Header.Get("DPoP"), r.Header.Get("Range"), r.Header.Get("If-Range")}, "|"))
	w.WriteHeader(http.StatusAccepted)
	w.Write(body)
}

// TestTransportRequests: each request has the same shape in process and
// over HTTPS.
func TestTransportRequests(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(echo))
	defer srv.Close()
	in := &federation.InProcess{}
	in.Handle("b.test", http.HandlerFunc(echo))
	host := strings.TrimPrefix(srv.URL, "https://")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		tr   federation.Transport
		base string
	}{
		{"https", federation.HTTPS{Client: srv.Client()}, srv.URL},
		{"inprocess", in, "https://b.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := strings.TrimPrefix(tc.base, "https://")
			if tc.name == "https" {
				h = host
			}
			for _, c := range []struct {
				name string
				do   func() (*federation.Answer, error)
				seen string
				body string
			}{
				{"push", func() (*federation.Answer, error) {
					return tc.tr.Push(ctx, federation.PushRequest{Endpoint: tc.base + federation.PathMessages, Assertion: "A", DPoP: "P", Body: []byte(`{"x":1}`)})
				}, "POST|" + h + "|/federation/v1/messages|application/json|DPoP A|P||", `{"x":1}`},
				{"exchange", func() (*federation.Answer, error) {
					return tc.tr.Exchange(ctx, federation.TokenRequest{Endpoint: tc.base + "/oauth/token", DPoP: "P", Form: url.Values{"a": {"b c"}}})
				}, "POST|" + h + "|/oauth/token|application/x-www-form-urlencoded||P||", "a=b+c"},
				{"fetch with Range", func() (*federation.Answer, error) {
					return tc.tr.Fetch(ctx, federation.FetchRequest{Endpoint: tc.base + federation.PathResources + "/cid", Token: "T", DPoP: "P",
						From: 42, IfRange: `"cid"`})
				}, "GET|" + h + "|/federation/v1/resources/cid||DPoP T|P|bytes=42-|\"cid\"", ""},
				{"no proof", func() (*federation.Answer, error) {
					return tc.tr.Push(ctx, federation.PushRequest{Endpoint: tc.base + federation.PathMessages, Body: []byte("{}")})
				}, "POST|" + h + "|/federation/v1/messages|application/json||||", "{}"},
			} {
				a, err := c.do()
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				b, _ := io.ReadAll(a.Body)
				a.Body.Close()
				if a.Status != http.StatusAccepted || a.Header.Get("X-Seen") != c.seen || string(b) != c.body {
					t.Fatalf("%s: %d %q %q, want 202 %q %q", c.name, a.Status, a.Header.Get("X-Seen"), b, c.seen, c.body)
				}
			}
		})
	}
}

func TestInProcessUnknownHost(t *testing.T) {
	in := &federation.InProcess{}
	_, err := in.Push(context.Background(), federation.PushRequest{Endpoint: "https://nowhere.test" + federation.PathMessages})
	if err == nil || !strings.Contains(err.Error(), "nowhere.test") {
		t.Fatalf("push to an unknown host: %v", err)
	}
}

// TestInProcessStreams: the answer arrives while the handler still writes,
// a handler that aborts mid-body cuts the body with an error, and closing
// the body early makes the handler's writes fail.
func TestInProcessStreams(t *testing.T) {
	in := &federation.InProcess{}
	step, done := make(chan struct{}), make(chan error, 1)
	in.Handle("stream.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		<-step
		switch r.URL.Path {
		case "/abort":
			panic(http.ErrAbortHandler)
		case "/endless":
			for {
				if _, err := w.Write(make([]byte, 1024)); err != nil {
					done <- err
					return
				}
			}
		}
		io.WriteString(w, " second")
	}))
	fetch := func(path string) *federation.Answer {
		a, err := in.Fetch(context.Background(), federation.FetchRequest{Endpoint: "https://stream.test" + path})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(a.Body, buf); err != nil || string(buf) != "first" {
			t.Fatalf("%s: first part: %q %v", path, buf, err)
		}
		return a
	}

	a := fetch("/whole")
	step <- struct{}{}
	if rest, err := io.ReadAll(a.Body); err != nil || string(rest) != " second" {
		t.Fatalf("rest: %q %v", rest, err)
	}
	a.Body.Close()

	a = fetch("/abort")
	step <- struct{}{}
	if b, err := io.ReadAll(a.Body); err == nil {
		t.Fatalf("an aborted answer read whole: %q", b)
	}
	a.Body.Close()

	a = fetch("/endless")
	step <- struct{}{}
	a.Body.Close()
	select {
	case err := <-done:
		if !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("the handler's write failed with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler still writes after the body was closed")
	}
}
