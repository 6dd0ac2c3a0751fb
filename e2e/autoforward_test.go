package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/sandbox"
)

// TestAutoForwardChain: four domains, in process and as four processes. alice@a.test sends
// bob@b.test a message with an attachment; bob forwards it by the CLI to
// carol@c.test; carol's rule forwards everything she receives to
// dave@d.test. Dave's copy completes with the attachment byte-identical and
// the whole chain (two forwarding hops, the second marked automatic), and
// a.test serves each resource once to each domain that pulled: b.test and
// c.test for their own copies, d.test for the forwarded one; b.test and
// c.test serve nothing. Before the admin allows it, carol cannot set the rule.
func TestAutoForwardChain(t *testing.T) {
	for _, kind := range sandbox.Kinds {
		t.Run(kind.String(), func(t *testing.T) { autoForwardChain(t, kind) })
	}
}

func autoForwardChain(t *testing.T, kind sandbox.Kind) {
	f := startDomains(t, kind, "alice@a.test", "bob@b.test", "carol@c.test", "dave@d.test")
	c := f.Domain("c.test")

	// Automatic forwarding is off by default: no rule.
	out, errOut, code := run(t, f.Env("carol@c.test"), "", "autoforward", "--to", "dave@d.test")
	if code == 0 || !strings.Contains(errOut, "forwarding_denied") {
		t.Fatalf("a rule against the default policy: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	var pol struct{ Address, Forwarding, Auto string }
	json.Unmarshal([]byte(must(t, nil, "", "user", "forwarding", "--data", c.Dir, "carol@c.test", "--json")), &pol)
	if pol.Forwarding != "allow" || pol.Auto != "deny" {
		t.Fatalf("carol's default policy: %+v", pol)
	}
	// The admin turns it on (the server reads the policy at each request).
	if out := must(t, nil, "", "user", "forwarding", "--data", c.Dir, "carol@c.test", "--auto", "allow"); !strings.Contains(out, "automatic forwarding allow") {
		t.Fatalf("user forwarding --auto allow: %s", out)
	}
	var rule struct {
		To      []string `json:"to"`
		Enabled bool     `json:"enabled"`
		Allowed bool     `json:"allowed"`
	}
	json.Unmarshal([]byte(must(t, f.Env("carol@c.test"), "", "autoforward", "--to", "dave@d.test", "--json")), &rule)
	if !rule.Enabled || !rule.Allowed || len(rule.To) != 1 || !strings.Contains(rule.To[0], "dave@d.test") {
		t.Fatalf("carol's rule: %+v", rule)
	}

	attach, payload := randomFile(t, "chain.bin", 2<<20+3)
	msgid := strings.TrimSpace(must(t, f.Env("alice@a.test"), "", "send", "--to", "Bob <bob@b.test>",
		"--subject", "Along the chain", "--text", "Pass it on.", "--attach", attach))
	waitComplete(t, f, "bob@b.test", msgid, 60*time.Second)
	fwdID := strings.TrimSpace(must(t, f.Env("bob@b.test"), "", "forward", msgid, "--to", "carol@c.test"))
	if !strings.HasSuffix(fwdID, "@b.test>") {
		t.Fatalf("bob's forward id: %q", fwdID)
	}
	waitComplete(t, f, "carol@c.test", msgid, 60*time.Second)
	waitComplete(t, f, "dave@d.test", msgid, 60*time.Second)
	checkAttachment(t, f, "dave@d.test", msgid, payload)
	checkAttachment(t, f, "carol@c.test", msgid, payload)

	var shown struct {
		Chain []struct {
			Hop         int            `json:"hop"`
			Domain      string         `json:"domain"`
			Audience    string         `json:"audience"`
			Subject     string         `json:"sub"`
			ForwardedTo []string       `json:"forwarded_to"`
			Headers     map[string]any `json:"headers"`
			EHL         []string       `json:"ehl"`
		} `json:"chain"`
		Forward *struct {
			From string `json:"from"`
		} `json:"forward"`
	}
	if err := json.Unmarshal([]byte(must(t, f.Env("dave@d.test"), "", "show", "--json", msgid)), &shown); err != nil {
		t.Fatal(err)
	}
	ch := shown.Chain
	if len(ch) != 3 || ch[0].Domain != "a.test" || ch[1].Domain != "b.test" || ch[2].Domain != "c.test" ||
		ch[1].Subject != "bob@b.test" || ch[2].Subject != "carol@c.test" || ch[2].Audience != "d.test" {
		t.Fatalf("dave's chain: %+v", ch)
	}
	if ch[1].Headers["Auto-Submitted"] != nil {
		t.Errorf("bob's manual hop is marked automatic: %v", ch[1].Headers)
	}
	if ch[2].Headers["Auto-Submitted"] != "auto-forwarded" || !slices.Contains(ch[2].EHL, "Auto-Submitted") {
		t.Errorf("carol's hop is not marked automatic, signed: %v %v", ch[2].Headers, ch[2].EHL)
	}
	if shown.Forward == nil || shown.Forward.From != "carol@c.test" {
		t.Errorf("dave's copy does not show carol's forward: %+v", shown.Forward)
	}

	// a.test served each of the message's two resources (the text, the
	// attachment) once to each domain that pulled: b.test and c.test for
	// their users' own copies, d.test for the forwarded one. The
	// forwarding domains pulled nothing for the forward (their counts would
	// be 4) and, not being origins, served nothing.
	served := originServedAt(t, f, "a.test")
	if served["b.test"] != 2 || served["c.test"] != 2 || served["d.test"] != 2 || len(served) != 3 {
		t.Errorf("a.test served %v, want b.test 2, c.test 2, d.test 2", served)
	}
	for _, d := range []string{"b.test", "c.test"} {
		if s := originServedAt(t, f, d); len(s) != 0 {
			t.Errorf("%s served %v as an origin", d, s)
		}
	}
	if n := metricAt(t, f, "c.test", `pullmail_autoforwards_total{result="queued"}`); n != 1 {
		t.Errorf("c.test queued %d automatic forwards, want 1", n)
	}
	t.Logf("a.test served %v", served)
}

// metrics reads a domain's /metrics: each sample line's name{labels} and
// value.
func metrics(t *testing.T, f *sandbox.Sandbox, domain string) map[string]int {
	t.Helper()
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(f.Domain(domain).URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = int(v)
		}
	}
	return out
}

func metricAt(t *testing.T, f *sandbox.Sandbox, domain, sample string) int {
	t.Helper()
	return metrics(t, f, domain)[sample]
}

// originServedAt is pullmail_origin_served_total of a domain, by the
// domain served.
func originServedAt(t *testing.T, f *sandbox.Sandbox, domain string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for k, v := range metrics(t, f, domain) {
		if rest, ok := strings.CutPrefix(k, `pullmail_origin_served_total{domain="`); ok {
			out[strings.TrimSuffix(rest, `"}`)] = v
		}
	}
	return out
}
