package bench

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/placeholder"
)

func domainsOf(rcpts []string) []string {
	var ds []string
	for _, r := range rcpts {
		_, d, _ := strings.Cut(r, "@")
		if !slices.Contains(ds, d) {
			ds = append(ds, d)
		}
	}
	return ds
}

func (s *Pullmail) disk(rcpts []string) (int64, int64, error) {
	var dirs []string
	for _, d := range domainsOf(rcpts) {
		dirs = append(dirs, s.Sandbox.Domain(d).Dir)
	}
	recv, err := diskBytes(dirs...)
	if err != nil {
		return 0, 0, err
	}
	_, sd, _ := strings.Cut(s.Sender, "@")
	send, err := diskBytes(s.Sandbox.Domain(sd).Dir)
	return recv, send, err
}

// draft creates a draft from from to rcpts with parts.
func draft(ctx context.Context, c *client.Client, from string, rcpts []string, subject string, parts ...placeholder.Part) (mailbox.Message, error) {
	m := placeholder.New(from, rcpts, nil, nil, subject)
	m.Parts = append(m.Parts, parts...)
	d, err := c.CreateDraft(ctx, m.Canonical())
	if err != nil {
		return mailbox.Message{}, fmt.Errorf("creating a draft: %w", err)
	}
	return d, nil
}

// uploadText uploads text and returns the inline text/plain part.
func uploadText(ctx context.Context, c *client.Client, text string) (placeholder.Part, error) {
	up, err := c.Upload(ctx, strings.NewReader(text), mailbox.UploadOptions{Size: int64(len(text))})
	if err != nil {
		return placeholder.Part{}, fmt.Errorf("uploading text: %w", err)
	}
	return placeholder.NewLeaf(up.ContentID, up.Size, "text/plain; charset=UTF-8", "inline", "")
}

// SendFile uploads the file at path as the sender, sends it to rcpts and
// returns once each copy is complete (or failed: Refused says why); it
// fills Seconds (Send to the last copy), UploadSeconds, Delivered and
// Refused.
func (s *Pullmail) SendFile(ctx context.Context, path string, size int64, rcpts []string, subject string) (Result, error) {
	alice, err := s.client(s.Sender)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	in, err := os.Open(path)
	if err != nil {
		return Result{}, err
	}
	up, err := alice.Upload(ctx, bufio.NewReaderSize(in, 1<<20), mailbox.UploadOptions{Size: size})
	in.Close()
	if err != nil {
		return Result{}, fmt.Errorf("uploading: %w", err)
	}
	upSecs := time.Since(start).Seconds()
	att, err := placeholder.NewLeaf(up.ContentID, up.Size, "application/octet-stream", "attachment", filepath.Base(path))
	if err != nil {
		return Result{}, err
	}
	d, err := draft(ctx, alice, s.Sender, rcpts, subject, att)
	if err != nil {
		return Result{}, err
	}
	start = time.Now()
	if _, err := alice.Send(ctx, d.ID); err != nil {
		return Result{}, fmt.Errorf("sending: %w", err)
	}
	res := Result{UploadSeconds: upSecs}
	deadline := start.Add(30*time.Minute + time.Duration(size/(1<<20))*time.Second)
	for _, u := range rcpts {
		c, err := s.client(u)
		if err != nil {
			return Result{}, err
		}
		ok, reason, err := waitComplete(ctx, c, d.MessageID, deadline)
		if err != nil {
			return Result{}, fmt.Errorf("%s: %w", u, err)
		}
		if !ok {
			res.Refused = reason
			continue
		}
		res.Delivered++
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// waitComplete polls c's inbox every 20 ms until it holds msgid complete
// (true) or failed (false and the reason).
func waitComplete(ctx context.Context, c *client.Client, msgid string, deadline time.Time) (bool, string, error) {
	for {
		l, err := c.List(ctx, mailbox.ListOptions{Limit: 50})
		if err != nil {
			return false, "", err
		}
		for _, m := range l.Messages {
			if m.MessageID != msgid {
				continue
			}
			switch m.Status {
			case "complete":
				return true, "", nil
			case "failed":
				return false, m.StatusReason, nil
			}
		}
		if time.Now().After(deadline) {
			return false, "", fmt.Errorf("%s not complete by %v", msgid, deadline.Format(time.TimeOnly))
		}
		select {
		case <-ctx.Done():
			return false, "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// SendSmall sends n small messages to rcpt, senders at once, each with
// its own text. A message's latency runs from Send returning to its copy
// complete in rcpt's changes feed (polled every 10 ms); the senders do not
// wait for delivery, so when they outrun the receiving domain copies queue
// and p50/p99 measure the backlog (SentPerSecond is the senders' rate). A
// failed copy counts as delivered for the timing, and Refused says why.
func (s *Pullmail) SendSmall(ctx context.Context, n, senders int, rcpt string) (SmallResult, error) {
	alice, err := s.client(s.Sender)
	if err != nil {
		return SmallResult{}, err
	}
	bob, err := s.client(rcpt)
	if err != nil {
		return SmallResult{}, err
	}
	l, err := bob.List(ctx, mailbox.ListOptions{Limit: 1})
	if err != nil {
		return SmallResult{}, err
	}
	cursor := l.Cursor
	var (
		mu     sync.Mutex
		sent   = map[string]time.Time{}
		done   = map[string]time.Time{}
		failed string
	)
	watchDone := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		deadline := time.Now().Add(10*time.Minute + time.Duration(n)*20*time.Millisecond)
		for time.Now().Before(deadline) {
			ch, err := bob.Changes(ctx, cursor, 1000)
			if err != nil {
				watchDone <- err
				return
			}
			now := time.Now()
			mu.Lock()
			for _, c := range ch.Changes {
				if c.Message == nil {
					continue
				}
				switch c.Message.Status {
				case "complete", "failed":
					if _, ok := done[c.Message.MessageID]; !ok {
						done[c.Message.MessageID] = now
						if c.Message.Status == "failed" && failed == "" {
							failed = c.Message.StatusReason
						}
					}
				}
			}
			finished := len(done) >= n
			mu.Unlock()
			if finished {
				watchDone <- nil
				return
			}
			cursor = ch.Cursor
			if !ch.More {
				time.Sleep(10 * time.Millisecond)
			}
		}
		watchDone <- fmt.Errorf("%d of %d delivered when the time ran out", len(done), n)
	}()

	first := time.Now()
	err = sendMany(ctx, alice, s.Sender, rcpt, n, senders, func(i int) string { return fmt.Sprintf("small %d", i) },
		func(_ int, d mailbox.Message, at time.Time) {
			mu.Lock()
			sent[d.MessageID] = at
			mu.Unlock()
		})
	if err != nil {
		return SmallResult{}, err
	}
	if err := <-watchDone; err != nil {
		return SmallResult{}, err
	}
	var last, lastSent time.Time
	var lat []float64
	for id, st := range sent {
		if st.After(lastSent) {
			lastSent = st
		}
		d, ok := done[id]
		if !ok {
			return SmallResult{}, fmt.Errorf("%s sent but never seen delivered", id)
		}
		if d.After(last) {
			last = d
		}
		lat = append(lat, max(0, d.Sub(st).Seconds()))
	}
	p50, p99 := percentiles(lat)
	res := SmallResult{Delivered: n, PerSecond: float64(n) / last.Sub(first).Seconds(), P50: p50, P99: p99, Refused: failed,
		SentPerSecond: float64(n) / lastSent.Sub(first).Seconds()}
	if failed != "" {
		res.Delivered = 0
		for id := range sent {
			if _, ok := done[id]; ok {
				res.Delivered++
			}
		}
	}
	return res, nil
}

// smtpSystem is one SMTP peer as the receiving MX of every recipient
// domain; the benchmark is the sending domain's MTA.
type smtpSystem struct {
	peer *peer
	ips  sourceIPs
}

func (s *smtpSystem) name() string         { return s.peer.name }
func (s *smtpSystem) logTail() string      { return lastLines(s.peer.stderr.String(), 8) }
func (s *smtpSystem) wire() int64          { return s.peer.proxy.Bytes() }
func (s *smtpSystem) pids() map[string]int { return s.peer.pids() }
func (s *smtpSystem) disk([]string) (int64, int64, error) {
	n, err := diskBytes(s.peer.dir)
	return n, 0, err
}

// SendFile delivers the message to each recipient domain's MX (the peer)
// in parallel, one SMTP transaction per domain as a sending MTA does, and
// checks that the store holds a new message file of the attachment's size
// at least.
func (s *smtpSystem) SendFile(ctx context.Context, path string, size int64, rcpts []string, subject string) (Result, error) {
	before := bigFiles(size, s.peer.msgDirs...)
	byDomain := map[string][]string{}
	domains := domainsOf(rcpts)
	for _, r := range rcpts {
		_, d, _ := strings.Cut(r, "@")
		byDomain[d] = append(byDomain[d], r)
	}
	msgid := fmt.Sprintf("%d.bench@a.test", time.Now().UnixNano())
	var wg sync.WaitGroup
	errs := make([]error, len(domains))
	start := time.Now()
	for i, d := range domains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialSMTP(ctx, s.peer.addr(), s.ips.get())
			if err != nil {
				errs[i] = err
				return
			}
			defer c.close()
			errs[i] = c.send(sender, byDomain[d], mimeWithAttachment(sender, rcpts, subject, msgid, path))
		}()
	}
	wg.Wait()
	res := Result{Seconds: time.Since(start).Seconds()}
	for i, err := range errs {
		if err != nil {
			if res.Refused == "" {
				res.Refused = err.Error()
			}
			continue
		}
		res.Delivered += len(byDomain[domains[i]])
	}
	if res.Delivered > 0 && bigFiles(size, s.peer.msgDirs...) <= before {
		return res, fmt.Errorf("%s answered 250 but stored no new message of %d bytes or more", s.peer.name, size)
	}
	return res, nil
}

// maxPerConn is the messages one SMTP connection carries before the sender
// opens another from a new source address (mox allows 500 a minute from
// one address).
const maxPerConn = 400

// SendSmall sends n small messages to rcpt over senders connections at
// once, each message its own transaction.
func (s *smtpSystem) SendSmall(ctx context.Context, n, senders int, rcpt string) (SmallResult, error) {
	before := bigFiles(1, s.peer.msgDirs...)
	var (
		next      atomic.Int64
		delivered atomic.Int64
		mu        sync.Mutex
		lat       []float64
		refused   string
		wg        sync.WaitGroup
	)
	start := time.Now()
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *smtpConn
			used, failures := 0, 0
			defer func() {
				if c != nil {
					c.close()
				}
			}()
			for failures < 10 {
				if c == nil || used >= maxPerConn {
					if c != nil {
						c.close()
					}
					var err error
					if c, err = dialSMTP(ctx, s.peer.addr(), s.ips.get()); err != nil {
						c = nil
						failures++
						mu.Lock()
						if refused == "" {
							refused = err.Error()
						}
						mu.Unlock()
						continue
					}
					used = 0
					c.wait = time.Minute
				}
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				t := time.Now()
				err := c.send(sender, []string{rcpt}, textMessage(sender, []string{rcpt}, fmt.Sprintf("small %d", i),
					fmt.Sprintf("%d.%d.bench@a.test", t.UnixNano(), i), fmt.Sprintf("Message %d.", i)))
				d := time.Since(t).Seconds()
				used++
				mu.Lock()
				if err != nil {
					failures++
					if refused == "" {
						refused = err.Error()
					}
				} else {
					delivered.Add(1)
					lat = append(lat, d)
				}
				mu.Unlock()
				if err != nil {
					if _, ok := err.(*smtpError); !ok {
						c.c.Close()
						c = nil
					}
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	p50, p99 := percentiles(lat)
	res := SmallResult{Delivered: int(delivered.Load()), PerSecond: float64(delivered.Load()) / secs, P50: p50, P99: p99, Refused: refused}
	if got := bigFiles(1, s.peer.msgDirs...) - before; got < res.Delivered {
		return res, fmt.Errorf("%s accepted %d messages but its store holds %d new files", s.peer.name, res.Delivered, got)
	}
	return res, nil
}

// sendMany sends n small messages from c's user (from) to rcpt, senders
// at once: each uploads its text, saves a draft with subject(i) and sends
// it without waiting for delivery; sent is told of each when Send returned.
// It returns once every sender is done, or at the first error.
func sendMany(ctx context.Context, c *client.Client, from, rcpt string, n, senders int, subject func(int) string,
	sent func(i int, d mailbox.Message, at time.Time)) error {
	var next atomic.Int64
	errc := make(chan error, senders)
	for range senders {
		go func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					errc <- nil
					return
				}
				text, err := uploadText(ctx, c, fmt.Sprintf("Message %d.\n", i))
				if err != nil {
					errc <- err
					return
				}
				d, err := draft(ctx, c, from, []string{rcpt}, subject(i), text)
				if err != nil {
					errc <- err
					return
				}
				if _, err := c.Send(ctx, d.ID); err != nil {
					errc <- fmt.Errorf("sending: %w", err)
					return
				}
				sent(i, d, time.Now())
			}
		}()
	}
	for range senders {
		if err := <-errc; err != nil {
			return err
		}
	}
	return nil
}

// percentiles returns the median and the 99th percentile of xs.
func percentiles(xs []float64) (p50, p99 float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs[len(xs)/2], xs[min(len(xs)-1, len(xs)*99/100)]
}
