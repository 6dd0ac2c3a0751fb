package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
)

// TestDoctor runs 'pullmail doctor' against a real server published as the
// sandbox publishes it (sandbox.StartDirectory: a real DNS server and the
// redirect service), and against broken variants of it.
func TestDoctor(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	ca, err := tlsca.LoadOrCreate(d.Dir) // the CA that issued a.test's certificate
	if err != nil {
		t.Fatal(err)
	}
	fed, err := sandbox.StartDirectory(ca, map[string]string{"a.test": d.URL}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fed.Close() })
	// b.test publishes only its authorization server.
	fed.DNS.AddSRV(discovery.ServiceAS+"b.test", 10, 5, fed.Port, "as.a.test", 3600)
	fed.DNS.AddMX("smtp.test", 20, "mx2.smtp.test")
	fed.DNS.AddMX("smtp.test", 10, "mx1.smtp.test")
	fed.DNS.AddMX("null.test", 0, ".")
	dns := fed.DNS.Addr()
	port := fed.Port

	type want struct {
		check, detail, fix string // substrings; "" matches anything
		ok                 bool
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []want // checks that must be there, in order
		n    int    // the number of checks
	}{
		{"good", []string{"a.test", "--dns", dns, "--ca", d.CA, "--allow-private"}, 0, []want{
			{check: "SRV _federizer._as._tcp.a.test", detail: fmt.Sprintf("10 5 %d as.a.test.", port), ok: true},
			{check: "SRV _federizer._rs._tcp.a.test", detail: fmt.Sprintf("10 5 %d mbx.a.test.", port), ok: true},
			{check: fmt.Sprintf("TLS as.a.test:%d", port), detail: "certificate for as.a.test", ok: true},
			{check: fmt.Sprintf("TLS mbx.a.test:%d", port), ok: true},
			{check: "AS metadata", detail: "issuer " + d.URL, ok: true},
			{check: "AS JWKS", detail: "kid " + d.Server.Keys.CurrentKID(), ok: true},
			{check: "mailbox metadata", detail: "mta_client_id mta@a.test, served by node " + d.Server.Node(), ok: true},
			{check: "MTA keys", detail: "1 usable key", ok: true},
			{check: "delivery", detail: "pullmail peer (mbx.a.test): SRV _federizer._rs._tcp.a.test names mbx.a.test", ok: true},
		}, 9},
		{"no SRV record", []string{"c.test", "--dns", dns, "--ca", d.CA, "--allow-private"}, 1, []want{
			{check: "SRV _federizer._as._tcp.c.test", detail: "no SRV record", fix: "_federizer._as._tcp.c.test. 3600 IN SRV 10 5 443 c.test."},
			{check: "SRV _federizer._rs._tcp.c.test", fix: "_federizer._rs._tcp.c.test. 3600 IN SRV 10 5 443 c.test."},
			{check: "AS metadata", detail: "skipped: no usable SRV record"},
			{check: "AS JWKS", detail: "skipped"},
			{check: "mailbox metadata", detail: "skipped"},
			{check: "MTA keys", detail: "skipped"},
			{check: "delivery", detail: "no_mail_host", fix: "or an MX record"},
		}, 7},
		{"one of two records", []string{"b.test", "--dns", dns, "--ca", d.CA, "--allow-private"}, 1, []want{
			{check: "SRV _federizer._as._tcp.b.test", ok: true},
			{check: "SRV _federizer._rs._tcp.b.test", fix: fmt.Sprintf("_federizer._rs._tcp.b.test. 3600 IN SRV 10 5 %d as.a.test.", port)},
			{check: "TLS as.a.test", ok: true},
			// The record leads to a.test's server: its issuer is right
			// for any name, its mailbox document would not be.
			{check: "AS metadata", ok: true},
			{check: "AS JWKS", ok: true},
			{check: "mailbox metadata", detail: "skipped"},
			{check: "delivery", detail: "no_mail_host"},
		}, 8},
		{"untrusted certificate", []string{"a.test", "--dns", dns, "--allow-private"}, 1, []want{
			{check: "SRV _federizer._as._tcp.a.test", ok: true},
			{check: "SRV _federizer._rs._tcp.a.test", ok: true},
			{check: "TLS as.a.test", detail: "certificate", fix: "--ca FILE"},
			{check: "TLS mbx.a.test", fix: "--ca FILE"},
			{check: "AS metadata", detail: "skipped: no SRV target"},
		}, 9},
		{"private address", []string{"a.test", "--dns", dns, "--ca", d.CA}, 1, []want{
			{check: "TLS as.a.test", detail: "127.0.0.1, a loopback", fix: "--allow-private"},
		}, 9},
		{"an SMTP domain", []string{"smtp.test", "--dns", dns}, 1, []want{
			{check: "SRV _federizer._as._tcp.smtp.test", detail: "no SRV record"},
			{check: "delivery", detail: "smtp peer (mx1.smtp.test, mx2.smtp.test): no SRV _federizer._rs._tcp.smtp.test; MX mx1.smtp.test (preference 10) and 1 more", ok: true},
			{check: "MTA-STS", detail: "no _mta-sts.smtp.test policy", ok: true},
		}, 8},
		{"a null MX", []string{"null.test", "--dns", dns}, 1, []want{
			{check: "delivery", detail: "null MX", fix: "remove the null MX"},
		}, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, out, errb := testEnv(nil, false)
			code := Main(context.Background(), env, append([]string{"doctor", "--json"}, tc.args...))
			if code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, errb.String())
			}
			var got []doctorCheck
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("%v: %s", err, out.String())
			}
			if len(got) != tc.n {
				t.Errorf("%d checks, want %d", len(got), tc.n)
			}
			i := 0
			for _, w := range tc.want {
				for i < len(got) && !strings.HasPrefix(got[i].Check, w.check) {
					i++
				}
				if i == len(got) {
					t.Fatalf("no check %q (in order) in %+v", w.check, got)
				}
				g := got[i]
				if g.OK != w.ok || !strings.Contains(g.Detail, w.detail) || !strings.Contains(g.Fix, w.fix) {
					t.Errorf("check %+v, want %+v", g, w)
				}
				if !g.OK && !strings.HasPrefix(g.Detail, "skipped") && g.Fix == "" {
					t.Errorf("check %q failed without a fix", g.Check)
				}
			}
		})
	}

	// Without --json: plain words, a fix line for every failure.
	env, out, errb := testEnv(nil, false)
	if code := Main(context.Background(), env, []string{"doctor", "c.test", "--dns", dns}); code != 1 {
		t.Errorf("exit %d", code)
	}
	if s := out.String(); !strings.Contains(s, "FAIL  SRV _federizer._as._tcp.c.test") ||
		!strings.Contains(s, "fix: add this record") || !strings.Contains(s, "checks did not pass") ||
		!strings.Contains(errb.String(), "checks failed") {
		t.Errorf("output:\n%s\nstderr: %s", s, errb.String())
	}
	env, _, _ = testEnv(nil, false)
	if code := Main(context.Background(), env, []string{"doctor"}); code != 2 {
		t.Errorf("no domain: exit %d, want 2", code)
	}
}
