package bench

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/tlsca"
)

// Workload 8 (issue 15): small messages out to an SMTP domain. The
// recipient, outRcpt, is an account of the maddy peer, which is out.test's
// MX (both DNS servers say so). Pullmail: a.test's user sends through the
// mailbox API and a.test's MTA composes, DKIM-signs and delivers by SMTP.
// The comparison: a second maddy, the relay, takes the same messages by
// SMTP from the benchmark and delivers them through its queue and remote
// target to the same peer. The clock stops for both when the peer has the
// message in its store (a new file there with the message's subject).
const (
	outDomain = "out.test"
	outMX     = "mx.out.test"
	outRcpt   = "u01@" + outDomain
)

// relaySpec is maddy built with its debugflags tag, whose --debug.smtpport
// makes the remote target dial the peer's port instead of 25.
var relaySpec = peerSpec{name: "maddy", module: "github.com/foxcpp/maddy", version: "v0.8.2", pkg: "./cmd/maddy", cgo: true, tags: "debugflags"}

// startMaddyRelay configures a maddy in dir that relays whatever it is
// given to the recipient domain's MX through its queue, dialling port
// mxPort of the exchanger.
func startMaddyRelay(ctx context.Context, bin, dir, resolv string, ca *tlsca.CA, mxPort int) (*peer, error) {
	port, err := sandbox.FreePort()
	if err != nil {
		return nil, err
	}
	cert, key, err := peerCert(ca, dir)
	if err != nil {
		return nil, err
	}
	state := filepath.Join(dir, "state")
	conf := fmt.Sprintf(`state_dir %s
runtime_dir %s
hostname relay.a.test
tls file %s %s

target.remote outbound_delivery {
    hostname relay.a.test
}

target.queue remote_queue {
    target &outbound_delivery
}

smtp tcp://127.0.0.1:%d {
    max_message_size 4G
    dmarc no
    deliver_to &remote_queue
}
`, state, filepath.Join(dir, "run"), cert, key, port)
	confPath := filepath.Join(dir, "maddy.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	p := &peer{name: "maddy-relay", version: relaySpec.version, dir: state, port: port,
		settings: []string{
			"maddy built with its `debugflags` tag: `--debug.smtpport PORT` makes the remote target dial the MX on the peer's port instead of 25",
			"one `smtp` endpoint on tcp://127.0.0.1:PORT delivering to `target.queue` → `target.remote` (default MX, MTA-STS and DANE policy; no DKIM signing, which Pullmail does)",
			"`dmarc no`, no `check { }` block; the same resolv.conf isolation as the peers",
		}}
	return p, p.start(ctx, isolatedCommand(resolv, bin, "--debug.smtpport", strconv.Itoa(mxPort), "--config", confPath, "run"))
}

// storeWatcher notes when each message (by subject) appears as a file in
// a peer's store, polling every 10 ms.
type storeWatcher struct {
	dirs []string
	mu   sync.Mutex
	seen map[string]bool      // file names
	at   map[string]time.Time // subject → when its file was first seen
}

func newStoreWatcher(dirs []string) *storeWatcher {
	w := &storeWatcher{dirs: dirs, seen: map[string]bool{}, at: map[string]time.Time{}}
	w.scan() // what is there already is not ours
	clear(w.at)
	return w
}

// scan reads the subject of every file not seen before.
func (w *storeWatcher) scan() {
	now := time.Now()
	for _, d := range w.dirs {
		filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return nil
			}
			w.mu.Lock()
			old := w.seen[path]
			w.mu.Unlock()
			if old {
				return nil
			}
			subj, ok := fileSubject(path)
			if !ok {
				return nil // not yet written whole; next time
			}
			w.mu.Lock()
			w.seen[path] = true
			if _, dup := w.at[subj]; !dup {
				w.at[subj] = now
			}
			w.mu.Unlock()
			return nil
		})
	}
}

// fileSubject reads a stored message's Subject field; false while the
// header is not complete.
func fileSubject(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	h, err := textproto.NewReader(bufio.NewReader(f)).ReadMIMEHeader()
	if err != nil {
		return "", false
	}
	return h.Get("Subject"), true
}

// wait polls until every subject is seen or the deadline passes.
func (w *storeWatcher) wait(ctx context.Context, subjects []string, deadline time.Time) (map[string]time.Time, error) {
	for {
		w.scan()
		w.mu.Lock()
		missing := 0
		for _, s := range subjects {
			if _, ok := w.at[s]; !ok {
				missing++
			}
		}
		w.mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d messages not in the peer's store by %v", missing, len(subjects), deadline.Format(time.TimeOnly))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.at), nil
}

// outResult turns send and store times into a SmallResult: rate over first
// send to last stored, latency per message from its send to its file.
func outResult(first time.Time, sent, stored map[string]time.Time, refused string) SmallResult {
	var last time.Time
	var lat []float64
	for subj, t := range sent {
		d, ok := stored[subj]
		if !ok {
			continue
		}
		if d.After(last) {
			last = d
		}
		lat = append(lat, max(0, d.Sub(t).Seconds()))
	}
	p50, p99 := percentiles(lat)
	res := SmallResult{Delivered: len(lat), P50: p50, P99: p99, Refused: refused}
	if len(lat) > 0 {
		res.PerSecond = float64(len(lat)) / last.Sub(first).Seconds()
	}
	return res
}

// SendOut sends n small messages to rcpt (an SMTP domain's user) with
// senders at once, each with its own text, and returns once the peer's
// store w holds them all.
func (s *Pullmail) SendOut(ctx context.Context, n, senders int, rcpt string, w *storeWatcher) (SmallResult, error) {
	alice, err := s.client(s.Sender)
	if err != nil {
		return SmallResult{}, err
	}
	run := time.Now().UnixNano()
	var (
		mu      sync.Mutex
		sent    = map[string]time.Time{}
		subject []string
	)
	for i := range n {
		subject = append(subject, fmt.Sprintf("out %d %d", run, i))
	}
	first := time.Now()
	err = sendMany(ctx, alice, s.Sender, rcpt, n, senders, func(i int) string { return subject[i] },
		func(i int, _ mailbox.Message, at time.Time) {
			mu.Lock()
			sent[subject[i]] = at
			mu.Unlock()
		})
	if err != nil {
		return SmallResult{}, err
	}
	stored, err := w.wait(ctx, subject, time.Now().Add(5*time.Minute+time.Duration(n)*20*time.Millisecond))
	if err != nil {
		return SmallResult{}, fmt.Errorf("Pullmail to %s: %w", rcpt, err)
	}
	res := outResult(first, sent, stored, "")
	res.SentPerSecond = float64(n) / time.Since(first).Seconds()
	return res, nil
}

// relaySystem is maddy relaying: the benchmark submits each message by
// SMTP to the relay, which queues it and delivers it to the peer.
type relaySystem struct {
	relay *peer
}

func (s *relaySystem) name() string         { return s.relay.name }
func (s *relaySystem) pids() map[string]int { return s.relay.pids() }
func (s *relaySystem) logTail() string      { return lastLines(s.relay.stderr.String(), 8) }
func (s *relaySystem) addr() string         { return s.relay.addr() }

// SendOut sends n small messages to rcpt through the relay, senders
// connections at once (one transaction per message), and returns once
// the peer's store holds them all. A message's latency runs from its MAIL
// to its file in the peer's store.
func (s *relaySystem) SendOut(ctx context.Context, n, senders int, rcpt string, w *storeWatcher) (SmallResult, error) {
	run := time.Now().UnixNano()
	var (
		next    atomic.Int64
		mu      sync.Mutex
		sent    = map[string]time.Time{}
		subject []string
		refused string
		wg      sync.WaitGroup
	)
	for i := range n {
		subject = append(subject, fmt.Sprintf("out %d %d", run, i))
	}
	first := time.Now()
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialSMTP(ctx, s.addr(), "")
			if err != nil {
				mu.Lock()
				refused = err.Error()
				mu.Unlock()
				return
			}
			defer c.close()
			c.wait = time.Minute
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				t := time.Now()
				err := c.send(sender, []string{rcpt}, textMessage(sender, []string{rcpt}, subject[i],
					fmt.Sprintf("%d.%d.relay.bench@a.test", run, i), fmt.Sprintf("Message %d.", i)))
				mu.Lock()
				if err != nil && refused == "" {
					refused = err.Error()
				}
				if err == nil {
					sent[subject[i]] = t
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	var want []string
	for subj := range sent {
		want = append(want, subj)
	}
	stored, err := w.wait(ctx, want, time.Now().Add(5*time.Minute+time.Duration(n)*20*time.Millisecond))
	if err != nil {
		return SmallResult{}, fmt.Errorf("maddy relaying to %s: %w (relay log: %s)", rcpt, err, s.logTail())
	}
	return outResult(first, sent, stored, refused), nil
}

// outSender is a system that sends to an SMTP domain.
type outSender interface {
	name() string
	pids() map[string]int
	SendOut(ctx context.Context, n, senders int, rcpt string, w *storeWatcher) (SmallResult, error)
}

// smtpOutCases runs workload 8 with each number of senders on each system,
// the peer's store watched in dirs.
func smtpOutCases(ctx context.Context, systems []outSender, peerPids map[string]int, dirs []string, n int, senders []int, logf func(string, ...any)) ([]SmallCase, error) {
	var cases []SmallCase
	for _, k := range senders {
		c := SmallCase{Senders: k, Messages: n}
		for _, sys := range systems {
			pids := sys.pids()
			for name, pid := range peerPids {
				pids[name] = pid
			}
			rssOf(pids, true)
			res, err := sys.SendOut(ctx, n, k, outRcpt, newStoreWatcher(dirs))
			if err != nil {
				return nil, fmt.Errorf("%s: %d small messages out, %d senders: %w", sys.name(), n, k, err)
			}
			res.System, res.PeakRSS = sys.name(), rssOf(pids, false)
			logf("w8 %d senders %s: %d delivered, %.0f msgs/s, p50 %.3fs, p99 %.3fs %s", k, sys.name(), res.Delivered, res.PerSecond, res.P50, res.P99, res.Refused)
			c.Results = append(c.Results, res)
		}
		cases = append(cases, c)
	}
	return cases, nil
}

// checkRelay makes sure the relay's binary has the flag it is started with
// (a cached build without the tag would deliver to port 25).
func checkRelay(bin string) error {
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "debug.smtpport") {
		return fmt.Errorf("%s has no --debug.smtpport: %v %s", bin, err, lastLines(string(out), 3))
	}
	return nil
}

// proxyPort is the port of the counting proxy in front of the peer.
func (p *peer) proxyPort() int {
	_, port, _ := net.SplitHostPort(p.proxy.Addr())
	n, _ := strconv.Atoi(port)
	return n
}
