package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/discovery/dnstest"
	"github.com/pullmail/pullmail/server"
)

// TestDoctorTwoNodes: a.test runs nodes n1 and n2, published as two SRV
// targets of equal priority (docs/PROTOCOL.md §11.1): doctor passes and
// names the node behind each target.
func TestDoctorTwoNodes(t *testing.T) {
	var cas []string
	start := func(name, publicURL string) (url string, port uint16) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if publicURL == "" {
			publicURL = "https://" + ln.Addr().String()
		}
		dir := t.TempDir()
		srv, err := server.Open(context.Background(), server.Config{DataDir: dir, Domain: "a.test", Node: name,
			Listen: ln.Addr().String(), PublicURL: publicURL, Hosts: []string{name + ".a.test"}, GCInterval: -1})
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done, ready := make(chan error, 1), make(chan string, 1)
		go func() { done <- srv.ServeListener(ctx, ln, func(u string) { ready <- u }) }()
		<-ready
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("serving %s: %v", name, err)
			}
			srv.Close()
		})
		cas = append(cas, filepath.Join(dir, "ca.pem"))
		return srv.PublicURL(), uint16(ln.Addr().(*net.TCPAddr).Port)
	}
	issuer, p1 := start("n1", "")
	_, p2 := start("n2", issuer)
	// One --ca file that trusts both nodes' local CAs.
	var pems []byte
	for _, f := range cas {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pems = append(pems, b...)
	}
	ca := filepath.Join(t.TempDir(), "cas.pem")
	if err := os.WriteFile(ca, pems, 0o600); err != nil {
		t.Fatal(err)
	}
	dns, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	for name, port := range map[string]uint16{"n1.a.test": p1, "n2.a.test": p2} {
		dns.AddA(name, "127.0.0.1")
		dns.AddSRV(discovery.ServiceAS+"a.test", 10, 5, port, name, 3600)
		dns.AddSRV(discovery.ServiceRS+"a.test", 10, 5, port, name, 3600)
	}

	env, out, errb := testEnv(nil, false)
	if code := Main(context.Background(), env, []string{"doctor", "--json", "a.test", "--dns", dns.Addr(), "--ca", ca, "--allow-private"}); code != 0 {
		t.Errorf("exit %d: %s\n%s", code, errb.String(), out.String())
	}
	var got []doctorCheck
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	want := map[string]string{
		fmt.Sprintf("TLS n1.a.test:%d", p1): "node n1",
		fmt.Sprintf("TLS n2.a.test:%d", p2): "node n2",
		"mailbox metadata":                  "served by node n1", // the issuer's URL is n1's
	}
	for _, c := range got {
		if w, ok := want[c.Check]; ok {
			if !c.OK || !strings.HasSuffix(c.Detail, w) {
				t.Errorf("check %+v, want ok ending %q", c, w)
			}
			delete(want, c.Check)
		}
	}
	if len(want) != 0 {
		t.Errorf("checks missing: %v in %+v", want, got)
	}
}
