package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
)

// flakyProxy stands between the CLI and a real server on loopback, with
// its own TLS certificate, and spoils the answers to sends as mode says:
// "lost" forwards the first send, waits for the server's answer (the send
// has committed) and drops the connection without answering; "gateway"
// forwards the first send and answers 502 instead; "down" answers every
// send 503 without forwarding it. Everything else passes through.
type flakyProxy struct {
	mode string
	up   *url.URL
	tr   *http.Transport
	rp   *httputil.ReverseProxy

	mu   sync.Mutex
	keys []string // the Idempotency-Key of each send seen
}

func (p *flakyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/send") {
		p.rp.ServeHTTP(w, r)
		return
	}
	p.mu.Lock()
	p.keys = append(p.keys, r.Header.Get(mailbox.IdempotencyKeyHeader))
	n := len(p.keys)
	p.mu.Unlock()
	switch {
	case p.mode == "down":
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
	case n == 1:
		out := r.Clone(r.Context())
		out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = p.up.Scheme, p.up.Host, p.up.Host, ""
		resp, err := p.tr.RoundTrip(out)
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if p.mode == "lost" {
			panic(http.ErrAbortHandler) // close the connection, answer nothing
		}
		http.Error(w, "bad gateway", http.StatusBadGateway)
	default:
		p.rp.ServeHTTP(w, r)
	}
}

// startFlakyProxy serves p on loopback over TLS and returns its URL and the
// path of the CA file that its certificate chains to.
func startFlakyProxy(t *testing.T, d *testenv.Domain, mode string) (*flakyProxy, string, string) {
	t.Helper()
	up, err := url.Parse(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(d.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	t.Cleanup(tr.CloseIdleConnections)
	p := &flakyProxy{mode: mode, up: up, tr: tr, rp: httputil.NewSingleHostReverseProxy(up)}
	p.rp.Transport = tr
	ca, err := tlsca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ca.TLSConfig([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { srv.Close() })
	return p, "https://" + ln.Addr().String(), ca.CertPath()
}

// TestSendRetriedOnce: when the answer to a send is lost after the server
// committed it (the connection dropped, or a gateway's 502), 'pullmail
// send' repeats the request under the same Idempotency-Key and reports
// success, and the recipient has one copy; when the server never takes the
// send, it fails after a few attempts and leaves no draft behind.
func TestSendRetriedOnce(t *testing.T) {
	for _, tc := range []struct {
		mode     string
		exit     int
		received int
	}{
		{"lost", 0, 1},
		{"gateway", 0, 1},
		{"down", 1, 0},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			ctx := context.Background()
			d := testenv.Start(t, "a.test", testenv.Options{})
			alice := d.AddUser(t, "alice@a.test")
			bob := d.AddUser(t, "bob@a.test")
			p, proxyURL, proxyCA := startFlakyProxy(t, d, tc.mode)
			env, out, errb := testEnv(map[string]string{
				"PULLMAIL_SERVER": proxyURL, "PULLMAIL_TOKEN": alice.Token, "PULLMAIL_CA": proxyCA,
			}, false)
			code := Main(ctx, env, []string{"send", "--to", "bob@a.test", "--subject", "once", "--text", "only once"})
			if code != tc.exit {
				t.Fatalf("send: exit %d, want %d: %s", code, tc.exit, errb.String())
			}
			p.mu.Lock()
			keys := append([]string(nil), p.keys...)
			p.mu.Unlock()
			if len(keys) < 2 {
				t.Fatalf("the send was not repeated: %d attempts", len(keys))
			}
			for _, k := range keys {
				if k == "" || k != keys[0] {
					t.Fatalf("the attempts carried keys %q, want one key", keys)
				}
			}
			l, err := bob.List(ctx, mailbox.ListOptions{Folder: "inbox"})
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Messages) != tc.received {
				t.Fatalf("bob has %d messages, want %d", len(l.Messages), tc.received)
			}
			if tc.received == 1 && strings.TrimSpace(out.String()) != l.Messages[0].MessageID {
				t.Fatalf("send printed %q, bob got %s", out.String(), l.Messages[0].MessageID)
			}
			for folder, want := range map[string]int{"drafts": 0, "sent": tc.received} {
				l, err := alice.List(ctx, mailbox.ListOptions{Folder: folder})
				if err != nil || len(l.Messages) != want {
					t.Fatalf("alice's %s: %d messages, want %d (%v)", folder, len(l.Messages), want, err)
				}
			}
		})
	}
}
