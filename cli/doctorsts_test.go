package cli

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pullmail/pullmail/discovery/dnstest"
	"github.com/pullmail/pullmail/tlsca"
)

// TestDoctorMTASTS: for an SMTP domain doctor shows its MTA-STS policy as
// the MTA fetches it, and fails when a policy is announced but cannot be
// had, or when enforce leaves an MX out.
func TestDoctorMTASTS(t *testing.T) {
	dns, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	ca, err := tlsca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var policy atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := policy.Load().(string)
		if p == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, p)
	}))
	if srv.TLS, err = ca.TLSConfig([]string{"mta-sts.smtp.test"}); err != nil {
		t.Fatal(err)
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(p)
	dns.AddMX("smtp.test", 10, "mx1.smtp.test")
	dns.AddMX("smtp.test", 20, "backup.other.test")
	dns.AddA("mta-sts.smtp.test", "127.0.0.1")
	dns.AddTXT("_mta-sts.smtp.test", "v=STSv1; id=20261203")
	for _, c := range []struct {
		name, policy string
		ok           bool
		detail, fix  string
	}{
		{"testing", "version: STSv1\nmode: testing\nmx: *.smtp.test\nmax_age: 86400\n", true,
			"mode testing, mx *.smtp.test, max_age 24h0m0s, id 20261203; MX backup.other.test not in the policy", "add an mx line"},
		{"enforce", "version: STSv1\nmode: enforce\nmx: *.smtp.test\nmx: backup.other.test\nmax_age: 604800\n", true,
			"mode enforce, mx *.smtp.test backup.other.test, max_age 168h0m0s", ""},
		{"enforce-missing-mx", "version: STSv1\nmode: enforce\nmx: mx1.smtp.test\nmax_age: 604800\n", false,
			"not in the policy: senders that enforce it do not deliver there", "add an mx line for backup.other.test"},
		{"unavailable", "", false, "cannot be had", "serve the policy as text/plain"},
	} {
		t.Run(c.name, func(t *testing.T) {
			policy.Store(c.policy)
			checks := runDoctor(context.Background(), doctorConfig{Domain: "smtp.test", DNS: dns.Addr(), RootCAs: ca.Pool(),
				AllowPrivate: true, stsPort: port})
			last := checks[len(checks)-1]
			if last.Check != "MTA-STS" || last.OK != c.ok || !strings.Contains(last.Detail, c.detail) || !strings.Contains(last.Fix, c.fix) {
				t.Fatalf("%+v; want ok %v, detail with %q, fix with %q", last, c.ok, c.detail, c.fix)
			}
		})
	}
}
