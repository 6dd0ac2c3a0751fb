package dnstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
)

func resolver(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

func startServer(t *testing.T) (*Server, *net.Resolver) {
	t.Helper()
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, resolver(s.Addr())
}

func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

func TestRecords(t *testing.T) {
	s, r := startServer(t)
	ctx := context.Background()
	s.AddSRV("_federizer._as._tcp.a.test", 10, 5, 8443, "as.a.test", 3600)
	s.AddSRV("_federizer._as._tcp.a.test.", 20, 0, 9443, "backup.a.test.", 60)
	s.AddA("as.a.test", "127.0.0.1")
	s.AddA("AS.a.test", "::1")

	_, srvs, err := r.LookupSRV(ctx, "", "", "_federizer._as._tcp.a.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(srvs) != 2 || srvs[0].Target != "as.a.test." || srvs[0].Port != 8443 || srvs[0].Priority != 10 ||
		srvs[1].Target != "backup.a.test." {
		t.Fatalf("SRV: %+v %+v", srvs[0], srvs[len(srvs)-1])
	}
	ips, err := r.LookupHost(ctx, "as.a.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(ips) != 2 {
		t.Fatalf("A/AAAA: %v", ips)
	}

	// Unknown names: NXDOMAIN; a known name without the type: no data.
	if _, _, err := r.LookupSRV(ctx, "", "", "_federizer._rs._tcp.a.test"); !notFound(err) {
		t.Errorf("unknown SRV: %v", err)
	}
	if _, err := r.LookupHost(ctx, "nowhere.a.test"); !notFound(err) {
		t.Errorf("unknown host: %v", err)
	}
	if _, _, err := r.LookupSRV(ctx, "", "", "as.a.test"); !notFound(err) {
		t.Errorf("SRV of an address-only name: %v", err)
	}

	s.RemoveA("as.a.test")
	if _, err := r.LookupHost(ctx, "as.a.test"); !notFound(err) {
		t.Errorf("after RemoveA: %v", err)
	}
	s.Remove("_federizer._as._tcp.a.test")
	if _, _, err := r.LookupSRV(ctx, "", "", "_federizer._as._tcp.a.test"); !notFound(err) {
		t.Errorf("after Remove: %v", err)
	}
}

// TestTCPFallback makes an answer too big for UDP: the resolver must get it
// whole over TCP.
func TestTCPFallback(t *testing.T) {
	s, r := startServer(t)
	const n = 60
	for i := range n {
		s.AddSRV("_federizer._rs._tcp.big.test", uint16(i), 1, 443, fmt.Sprintf("host-with-a-long-name-%02d.big.test", i), 60)
	}
	_, srvs, err := r.LookupSRV(context.Background(), "", "", "_federizer._rs._tcp.big.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(srvs) != n {
		t.Fatalf("got %d records, want %d", len(srvs), n)
	}
}

func TestConcurrentUpdates(t *testing.T) {
	s, r := startServer(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			name := fmt.Sprintf("h%d.test", i)
			for range 50 {
				s.AddA(name, "127.0.0.1")
				r.LookupHost(context.Background(), name)
				s.RemoveA(name)
			}
		})
	}
	wg.Wait()
	if _, err := r.LookupHost(context.Background(), "h0.test"); !notFound(err) {
		t.Errorf("h0.test after removal: %v", err)
	}
}
