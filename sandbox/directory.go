package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/discovery/dnstest"
	"github.com/pullmail/pullmail/tlsca"
)

// Directory makes domains discoverable as docs/PROTOCOL.md §11.1 says: a
// DNS server with each domain's two SRV records, and the HTTPS redirect
// service that their targets name.
//
// An SRV target is a host name, never an address, and a domain's server is
// at https://127.0.0.1:PORT (the URL its users and its issuer use). So the
// targets are as.D and mbx.D, with A records 127.0.0.1, on the port of one
// redirect service whose certificate (from the sandbox's CA) names them all;
// it redirects the well-known request once to the same path on the domain's
// URL, which discovery maps to the base URL https://127.0.0.1:PORT, equal to
// the AS's issuer and the mailbox document's url (the redirect service of
// seed 004 Note 1). Making the domain's own server the target would need its
// issuer to be https://D:PORT, a name only this DNS server knows, and the
// CLI could not reach it.
type Directory struct {
	DNS  *dnstest.Server
	Port uint16 // the redirect service's
	srv  *http.Server
	done chan struct{}
	// redirects counts the redirects answered (Redirects).
	redirects atomic.Int64
}

// Redirects is the number of discovery redirects the service answered:
// what a request count per delivery adds to the domains' own requests.
func (f *Directory) Redirects() int64 { return f.redirects.Load() }

// StartDirectory publishes urls (domain → base URL) with certificates from
// ca; the redirect service logs its errors to log.
func StartDirectory(ca *tlsca.CA, urls map[string]string, log *slog.Logger) (*Directory, error) {
	type target struct{ url, path string } // the domain's URL, the one path served
	targets := map[string]target{}         // by host: as.D, mbx.D
	var hosts []string
	for d, u := range urls {
		targets["as."+d] = target{u, discovery.PathASMetadata}
		targets["mbx."+d] = target{u, discovery.PathMailbox}
		hosts = append(hosts, "as."+d, "mbx."+d)
	}
	tc, err := ca.TLSConfig(hosts)
	if err != nil {
		return nil, fmt.Errorf("redirect service certificate: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("redirect service: %w", err)
	}
	dns, err := dnstest.Start()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("DNS server: %w", err)
	}
	f := &Directory{DNS: dns, Port: uint16(ln.Addr().(*net.TCPAddr).Port), done: make(chan struct{})}
	for d := range urls {
		dns.AddA("as."+d, "127.0.0.1")
		dns.AddA("mbx."+d, "127.0.0.1")
		dns.AddSRV(discovery.ServiceAS+d, 10, 5, f.Port, "as."+d, 3600)
		dns.AddSRV(discovery.ServiceRS+d, 10, 5, f.Port, "mbx."+d, 3600)
	}
	f.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, err := net.SplitHostPort(r.Host)
			if err != nil {
				host = r.Host
			}
			to, ok := targets[strings.ToLower(host)]
			if !ok || r.URL.Path != to.path || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
				http.NotFound(w, r)
				return
			}
			f.redirects.Add(1)
			http.Redirect(w, r, to.url+to.path, http.StatusFound)
		}),
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(f.done)
		f.srv.ServeTLS(ln, "", "")
	}()
	return f, nil
}

// Shutdown stops the redirect service gracefully.
func (f *Directory) Shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f.srv.Shutdown(ctx)
}

// Close stops the redirect service and the DNS server.
func (f *Directory) Close() error {
	err := f.srv.Close()
	<-f.done
	return errors.Join(err, f.DNS.Close())
}
