package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/placeholder"
)

// The benchmarks of issue 4's "Performance" section, each domain its own
// 'pullmail serve' process (see federation). Run them by hand, one
// iteration each:
//
//	go test ./e2e -run '^$' -bench 'Federation|Fanout' -benchtime=1x
//
// PULLMAIL_BENCH_SIZE, PULLMAIL_BENCH_N and PULLMAIL_BENCH_FANOUT_SIZE
// shrink them for a quick run.

// mustTB runs pullmail like must, for tests and benchmarks alike.
func mustTB(tb testing.TB, env []string, stdin string, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		tb.Fatalf("pullmail %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// envInt reads a positive integer from the environment, def if unset.
func envInt(b *testing.B, name string, def int64) int64 {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// benchFile writes size pseudo-random bytes to a new file and fsyncs it,
// so that its writeback does not compete with what is measured.
func benchFile(b *testing.B, name string, size int64) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.NewChaCha8([32]byte{2}), size); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return path
}

// client returns a Go client for user, talking to base (the domain's
// public URL when empty).
func (f *federation) client(user, base string) *client.Client {
	f.t.Helper()
	_, d, _ := strings.Cut(user, "@")
	p := f.domains[d]
	if base == "" {
		base = p.url
	}
	c, err := client.New(base, p.tokens[user], f.caPath)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// uploadFile uploads path as one resource and returns the attachment part.
func uploadFile(ctx context.Context, c *client.Client, path string) (placeholder.Part, error) {
	in, err := os.Open(path)
	if err != nil {
		return placeholder.Part{}, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return placeholder.Part{}, err
	}
	up, err := c.Upload(ctx, bufio.NewReaderSize(in, 1<<20), mailbox.UploadOptions{Size: fi.Size()})
	if err != nil {
		return placeholder.Part{}, fmt.Errorf("uploading %s: %w", path, err)
	}
	return placeholder.NewLeaf(up.ContentID, up.Size, "application/octet-stream", "attachment", filepath.Base(path))
}

// uploadText uploads text and returns the inline text/plain part.
func uploadText(ctx context.Context, c *client.Client, text string) (placeholder.Part, error) {
	up, err := c.Upload(ctx, strings.NewReader(text), mailbox.UploadOptions{Size: int64(len(text))})
	if err != nil {
		return placeholder.Part{}, fmt.Errorf("uploading text: %w", err)
	}
	return placeholder.NewLeaf(up.ContentID, up.Size, "text/plain; charset=UTF-8", "inline", "")
}

// draft creates a draft from from to to with parts and returns it.
func draft(ctx context.Context, c *client.Client, from string, to []string, subject string, parts ...placeholder.Part) (mailbox.Message, error) {
	m := placeholder.New(from, to, nil, nil, subject)
	m.Parts = append(m.Parts, parts...)
	d, err := c.CreateDraft(ctx, m.Canonical())
	if err != nil {
		return mailbox.Message{}, fmt.Errorf("creating a draft: %w", err)
	}
	return d, nil
}

// waitInbox polls c's inbox every poll until it holds msgid complete, and
// fails the benchmark if the copy fails or within passes.
func waitInbox(b *testing.B, c *client.Client, msgid string, poll, within time.Duration) {
	b.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(within)
	for {
		l, err := c.List(ctx, mailbox.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range l.Messages {
			if m.MessageID != msgid {
				continue
			}
			switch m.Status {
			case "complete":
				return
			case "failed":
				b.Fatalf("copy of %s failed: %s", msgid, m.StatusReason)
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not complete after %v", msgid, within)
		}
		time.Sleep(poll)
	}
}

// httpsCopies POSTs src n times, one after the other, to a loopback HTTPS
// server that writes each to a file and fsyncs it, and returns the
// seconds taken: the yardstick of one cross-domain delivery.
func httpsCopies(b *testing.B, src string, n int) float64 {
	b.Helper()
	dir := b.TempDir()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, err := os.CreateTemp(dir, "copy-")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer os.Remove(out.Name())
		defer out.Close()
		if _, err := io.CopyBuffer(out, r.Body, make([]byte, 64<<10)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := out.Sync(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	hc := srv.Client()
	start := time.Now()
	for range n {
		in, err := os.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		fi, err := in.Stat()
		if err != nil {
			b.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodPost, srv.URL, in)
		if err != nil {
			b.Fatal(err)
		}
		req.ContentLength = fi.Size()
		resp, err := hc.Do(req)
		in.Close()
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			b.Fatalf("copy: %s", resp.Status)
		}
	}
	return time.Since(start).Seconds()
}

// serverRSS reports the peak RSS of each of f's servers in MiB.
func serverRSS(b *testing.B, f *federation, domains ...string) {
	b.Helper()
	for _, d := range domains {
		rss, err := peakRSS(f.domains[d].cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(rss)/(1<<20), d+"-peak-RSS-MiB")
	}
}

// BenchmarkFederation1GiB sends one message with a PULLMAIL_BENCH_SIZE
// attachment (default 1 GiB) from a.test to b.test, two processes, and
// times Send to bob's copy complete (List polled every 50 ms) against three
// sequential loopback HTTPS copies of the same file in the same run. The
// issue's targets: delivery/3-copies ≤ 1, each server's peak RSS < 100 MiB.
func BenchmarkFederation1GiB(b *testing.B) {
	size := benchSize(b)
	src := benchFile(b, "big.bin", size)
	copySecs := httpsCopies(b, src, 3)

	f := newFederation(b, "alice@a.test", "bob@b.test")
	f.domains["a.test"].start()
	f.domains["b.test"].start()
	alice, bob := f.client("alice@a.test", ""), f.client("bob@b.test", "")
	ctx := context.Background()
	b.ResetTimer()
	var upSecs, deliverSecs float64
	for i := 0; i < b.N; i++ {
		start := time.Now()
		att, err := uploadFile(ctx, alice, src)
		if err != nil {
			b.Fatal(err)
		}
		upSecs += time.Since(start).Seconds()
		d, err := draft(ctx, alice, "alice@a.test", []string{"bob@b.test"}, fmt.Sprintf("big %d", i), att)
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		if _, err := alice.Send(ctx, d.ID); err != nil {
			b.Fatal(err)
		}
		waitInbox(b, bob, d.MessageID, 50*time.Millisecond, 30*time.Minute)
		deliverSecs += time.Since(start).Seconds()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(size)/(1<<20), "MiB")
	b.ReportMetric(upSecs/n, "upload-s")
	b.ReportMetric(deliverSecs/n, "send-to-complete-s")
	b.ReportMetric(copySecs, "3-https-copies-s")
	b.ReportMetric(deliverSecs/n/copySecs, "delivery/3-copies")
	serverRSS(b, f, "a.test", "b.test")
}

// BenchmarkFederationSmall sends PULLMAIL_BENCH_N small messages (default
// 10000) from a.test to b.test, 16 senders at once, each message with its
// own short text. Latency runs from Send returning to bob's copy complete,
// seen on bob's changes feed (polled every 10 ms); throughput is messages
// over the time from the first Send to the last completion. sent-msgs/s is
// the senders' own rate: when it exceeds msgs/s, copies queue at b.test and
// the latencies grow with N.
func BenchmarkFederationSmall(b *testing.B) {
	const senders = 16
	n := int(envInt(b, "PULLMAIL_BENCH_N", 10000))
	f := newFederation(b, "alice@a.test", "bob@b.test")
	f.domains["a.test"].start()
	f.domains["b.test"].start()
	alice, bob := f.client("alice@a.test", ""), f.client("bob@b.test", "")
	ctx := context.Background()
	b.ResetTimer()
	var rate, sendRate, p50, p99 float64
	for iter := 0; iter < b.N; iter++ {
		l, err := bob.List(ctx, mailbox.ListOptions{Limit: 1})
		if err != nil {
			b.Fatal(err)
		}
		var (
			mu   sync.Mutex
			sent = map[string]time.Time{} // Message-ID: when Send returned
			done = map[string]time.Time{} // Message-ID: when bob's copy was seen complete
		)
		watchErr := make(chan error, 1)
		go func() {
			cursor := l.Cursor
			deadline := time.Now().Add(10*time.Minute + time.Duration(n)*10*time.Millisecond)
			for time.Now().Before(deadline) {
				ch, err := bob.Changes(ctx, cursor, 1000)
				if err != nil {
					watchErr <- err
					return
				}
				now := time.Now()
				mu.Lock()
				for _, c := range ch.Changes {
					if c.Message == nil {
						continue
					}
					switch c.Message.Status {
					case "complete":
						if _, ok := done[c.Message.MessageID]; !ok {
							done[c.Message.MessageID] = now
						}
					case "failed":
						mu.Unlock()
						watchErr <- fmt.Errorf("copy of %s failed: %s", c.Message.MessageID, c.Message.StatusReason)
						return
					}
				}
				finished := len(done) >= n
				mu.Unlock()
				if finished {
					watchErr <- nil
					return
				}
				cursor = ch.Cursor
				if !ch.More {
					time.Sleep(10 * time.Millisecond)
				}
			}
			watchErr <- fmt.Errorf("%d of %d complete when the time ran out", len(done), n)
		}()

		var next atomic.Int64
		sendErr := make(chan error, senders)
		first := time.Now()
		for range senders {
			go func() {
				for {
					i := next.Add(1) - 1
					if i >= int64(n) {
						sendErr <- nil
						return
					}
					text, err := uploadText(ctx, alice, fmt.Sprintf("Message %d of run %d.\n", i, iter))
					if err != nil {
						sendErr <- err
						return
					}
					d, err := draft(ctx, alice, "alice@a.test", []string{"bob@b.test"}, fmt.Sprintf("small %d", i), text)
					if err != nil {
						sendErr <- err
						return
					}
					if _, err := alice.Send(ctx, d.ID); err != nil {
						sendErr <- fmt.Errorf("sending: %w", err)
						return
					}
					now := time.Now()
					mu.Lock()
					sent[d.MessageID] = now
					mu.Unlock()
				}
			}()
		}
		for range senders {
			if err := <-sendErr; err != nil {
				b.Fatal(err)
			}
		}
		if err := <-watchErr; err != nil {
			b.Fatal(err)
		}
		var last, lastSent time.Time
		lat := make([]float64, 0, n)
		for id, s := range sent {
			if s.After(lastSent) {
				lastSent = s
			}
			d, ok := done[id]
			if !ok {
				b.Fatalf("%s sent but never seen complete", id)
			}
			if d.After(last) {
				last = d
			}
			lat = append(lat, max(0, d.Sub(s).Seconds()))
		}
		slices.Sort(lat)
		rate += float64(n) / last.Sub(first).Seconds()
		sendRate += float64(n) / lastSent.Sub(first).Seconds()
		p50 += lat[len(lat)/2]
		p99 += lat[min(len(lat)-1, len(lat)*99/100)]
	}
	b.StopTimer()
	it := float64(b.N)
	b.ReportMetric(float64(n), "msgs")
	b.ReportMetric(rate/it, "msgs/s")
	b.ReportMetric(sendRate/it, "sent-msgs/s")
	b.ReportMetric(p50/it*1000, "p50-ms")
	b.ReportMetric(p99/it*1000, "p99-ms")
	serverRSS(b, f, "a.test", "b.test")
}

// countingProxy forwards every connection on its listener to a server's
// real port, TLS untouched, counting the bytes both ways as they pass.
type countingProxy struct {
	ln    net.Listener
	to    string
	bytes atomic.Int64
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// startProxy listens on addr and forwards to to until the benchmark ends.
func startProxy(b *testing.B, addr, to string) *countingProxy {
	b.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	p := &countingProxy{ln: ln, to: to, conns: map[net.Conn]struct{}{}}
	go p.serve()
	b.Cleanup(p.close)
	return p
}

func (p *countingProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(in)
	}
}

func (p *countingProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
}

func (p *countingProxy) forward(in net.Conn) {
	p.track(in)
	out, err := net.Dial("tcp", p.to)
	if err != nil {
		in.Close()
		return
	}
	p.track(out)
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		io.CopyBuffer(countingWriter{dst, &p.bytes}, src, make([]byte, 64<<10))
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}
	wg.Add(2)
	go pipe(out, in)
	go pipe(in, out)
	wg.Wait()
	in.Close()
	out.Close()
	p.mu.Lock()
	delete(p.conns, in)
	delete(p.conns, out)
	p.mu.Unlock()
}

func (p *countingProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// countingWriter adds what it writes to n as it goes, so that connections
// kept alive are counted too.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// startBehindProxy runs p's server on a port of its own behind a counting
// proxy on p's public port, which DNS and the redirect service point at,
// and returns the proxy and the server's direct URL for the domain's own
// clients, whose traffic is then left out of the count.
func startBehindProxy(b *testing.B, p *domainProc) (*countingProxy, string) {
	b.Helper()
	port := freePort(b)
	proxy := startProxy(b, fmt.Sprintf("127.0.0.1:%d", p.port), fmt.Sprintf("127.0.0.1:%d", port))
	p.listen, p.logLevel = port, "warn" // 100 recipients would fill the logs
	p.start()
	return proxy, fmt.Sprintf("https://127.0.0.1:%d", port)
}

// blobBytes adds up the sizes of the files under dir's resources/blobs.
func blobBytes(b *testing.B, dir string) int64 {
	b.Helper()
	var total int64
	err := filepath.WalkDir(filepath.Join(dir, "resources", "blobs"), func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type().IsRegular() {
			fi, err := e.Info()
			if err != nil {
				return err
			}
			total += fi.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}

// BenchmarkFanout sends one message with a PULLMAIL_BENCH_FANOUT_SIZE
// attachment (default 100 MiB) from alice@s.test to 100 recipients, 20 on
// each of five other domains d1.test…d5.test: six processes. Each domain's
// public port is a counting TCP proxy, so every byte between domains is
// counted once (at the domain it goes to); the domains' own clients talk to
// the servers directly. Disk is the blob store of all six domains once every
// copy is complete. The yardsticks are the issue's: 5× the attachment on
// the wire (one pull per recipient domain), 6× on disk (one copy per domain).
func BenchmarkFanout(b *testing.B) {
	const domains, perDomain = 5, 20
	size := envInt(b, "PULLMAIL_BENCH_FANOUT_SIZE", 100<<20)
	src := benchFile(b, "fanout.bin", size)
	users := []string{"alice@s.test"}
	var rcpts []string
	for d := 1; d <= domains; d++ {
		for u := 1; u <= perDomain; u++ {
			rcpts = append(rcpts, fmt.Sprintf("u%02d@d%d.test", u, d))
		}
	}
	users = append(users, rcpts...)
	f := newFederation(b, users...)
	var proxies []*countingProxy
	direct := map[string]string{}
	for _, p := range f.domains {
		proxy, url := startBehindProxy(b, p)
		proxies = append(proxies, proxy)
		direct[p.domain] = url
	}
	clientOf := func(user string) *client.Client {
		_, d, _ := strings.Cut(user, "@")
		return f.client(user, direct[d])
	}
	wire := func() int64 {
		var n int64
		for _, p := range proxies {
			n += p.bytes.Load()
		}
		return n
	}
	alice := clientOf("alice@s.test")
	ctx := context.Background()
	b.ResetTimer()
	if b.N != 1 {
		b.Fatalf("BenchmarkFanout measures one message: run it with -benchtime=1x")
	}
	att, err := uploadFile(ctx, alice, src)
	if err != nil {
		b.Fatal(err)
	}
	d, err := draft(ctx, alice, "alice@s.test", rcpts, "fan-out", att)
	if err != nil {
		b.Fatal(err)
	}
	wire0 := wire()
	start := time.Now()
	if _, err := alice.Send(ctx, d.ID); err != nil {
		b.Fatal(err)
	}
	for _, u := range rcpts {
		waitInbox(b, clientOf(u), d.MessageID, 50*time.Millisecond, 10*time.Minute)
	}
	secs := time.Since(start).Seconds()
	b.StopTimer()
	onWire := wire() - wire0
	var onDisk int64
	for _, p := range f.domains {
		onDisk += blobBytes(b, p.dir)
	}
	s := float64(size)
	b.ReportMetric(s/(1<<20), "attachment-MiB")
	b.ReportMetric(secs, "send-to-all-complete-s")
	b.ReportMetric(float64(onWire)/(1<<20), "wire-MiB")
	b.ReportMetric(float64(onWire)/(5*s), "wire/5x")
	b.ReportMetric(float64(onDisk)/(1<<20), "disk-MiB")
	b.ReportMetric(float64(onDisk)/(6*s), "disk/6x")
}
