package interop

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pullmail/pullmail/bench"
	"github.com/pullmail/pullmail/sandbox"
)

// peerBinary returns the binary of maddy or mox that 'pullmail bench'
// built into its cache (PULLMAIL_BENCH_CACHE, default bench's). With CI
// set a missing one is built (from the Go module proxy); locally the test
// skips, saying how to build it.
func peerBinary(t testing.TB, name string) string {
	t.Helper()
	cache := os.Getenv("PULLMAIL_BENCH_CACHE")
	if cache == "" {
		cache = bench.DefaultCacheDir()
	}
	if os.Getenv("CI") == "" {
		p := filepath.Join(cache, name+"-"+bench.PeerVersion(name), name)
		_, err := os.Stat(p)
		require(t, err == nil, name+" "+bench.PeerVersion(name), "CI=1 go test -run TestPeerBinaries ./interop/, or pullmail bench, builds it into "+cache)
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bin, err := bench.PeerBinary(ctx, name, cache, io.Discard)
	if err != nil {
		t.Fatalf("building %s: %v", name, err)
	}
	return bin
}

// TestPeerBinaries has maddy and mox at hand (.ci/run builds them with it,
// before the tests that use them).
func TestPeerBinaries(t *testing.T) {
	for _, n := range bench.PeerNames {
		t.Logf("%s %s: %s", n, bench.PeerVersion(n), peerBinary(t, n))
	}
}

// peerNet starts the peers' network (their DNS server and resolv.conf).
func peerNet(t testing.TB) *bench.PeerNet {
	t.Helper()
	n, err := bench.StartPeerNet(t.TempDir())
	require(t, err == nil, fmt.Sprintf("a private resolv.conf for the peers (%v)", err), "run as root, with unshare(1)")
	t.Cleanup(n.Close)
	return n
}

// port25 finds a loopback address whose port 25 is free: where a peer's
// MTA, which dials port 25 of every MX, finds Pullmail's mail exchanger.
func port25(t testing.TB) string {
	t.Helper()
	for i := 3; i < 60; i++ {
		addr := fmt.Sprintf("127.1.6.%d:25", i)
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatal("no loopback address with port 25 free")
	return ""
}

// runPeer starts cmd and stops it when the test ends (SIGTERM, SIGKILL
// after 10 s), once it greets on addr.
func runPeer(t testing.TB, name string, cmd *exec.Cmd, addr string) *sandbox.Buffer {
	t.Helper()
	var log sandbox.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s logged:\n%s", name, log.String())
		}
	})
	if err := waitGreeting(addr, 60*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, log.String())
	}
	return &log
}
