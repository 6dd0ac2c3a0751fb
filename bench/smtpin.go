package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/mailbox"
)

// Workload 6 (issue 15): one message with an attachment into the
// recipient domain's MX by SMTP, on every system, and the same attachment
// again in a new message. The peers do here what they do in workloads 1
// and 2; Pullmail's MX converts the MIME as it streams in (every leaf
// decoded and stored content-addressed), so the question is whether that
// costs more time than a peer's plain store, and whether the disk holds
// the decoded size (not base64's 4/3) and the second copy adds nothing.

// smtpReceiver is a system whose MX takes a message by SMTP.
type smtpReceiver interface {
	// ReceiveFile delivers a message with the file at path to rcpts by
	// SMTP into their domain's MX, returning at the 250 after DATA with
	// Seconds, Delivered, Refused and (where the system has no proxy on
	// that port) WireBytes filled.
	ReceiveFile(ctx context.Context, path string, size int64, rcpts []string, subject string) (Result, error)
}

// ReceiveFile is SendFile: the benchmark is the sending MTA in both.
func (s *smtpSystem) ReceiveFile(ctx context.Context, path string, size int64, rcpts []string, subject string) (Result, error) {
	return s.SendFile(ctx, path, size, rcpts, subject)
}

// ReceiveFile delivers to the first recipient's domain's mail exchanger
// (the sandbox's SMTP port of that domain), one transaction for every
// recipient of that domain, then checks that each recipient's inbox holds
// the message complete (the MX delivers by reference, complete at once).
func (s *Pullmail) ReceiveFile(ctx context.Context, path string, size int64, rcpts []string, subject string) (Result, error) {
	domains := domainsOf(rcpts)
	if len(domains) != 1 {
		return Result{}, fmt.Errorf("SMTP in: one recipient domain, not %d", len(domains))
	}
	d := s.Sandbox.Domain(domains[0])
	if d == nil || d.SMTP == "" {
		return Result{}, fmt.Errorf("SMTP in: %s has no mail exchanger", domains[0])
	}
	msgid := fmt.Sprintf("%d.smtp-in.bench@a.test", time.Now().UnixNano())
	var cw countWriter
	start := time.Now()
	c, err := dialSMTP(ctx, d.SMTP, "")
	if err != nil {
		return Result{}, err
	}
	body := mimeWithAttachment(sender, rcpts, subject, msgid, path)
	err = c.send(sender, rcpts, func(w io.Writer) error {
		cw.w = w
		return body(&cw)
	})
	c.close()
	res := Result{Seconds: time.Since(start).Seconds(), WireBytes: cw.n}
	if err != nil {
		res.Refused = err.Error()
		return res, nil
	}
	deadline := time.Now().Add(time.Minute)
	for _, u := range rcpts {
		uc, err := s.client(u)
		if err != nil {
			return Result{}, err
		}
		// The placeholder keeps the Message-ID field as sent, in its
		// angle brackets or not: compare without them.
		id, err := waitMessage(ctx, uc, func(m mailbox.Message) bool { return strings.Trim(m.MessageID, "<>") == msgid }, deadline)
		if err != nil {
			return Result{}, fmt.Errorf("SMTP in: %s: answered 250 but: %w", u, err)
		}
		if id.Status != "complete" {
			res.Refused = fmt.Sprintf("delivered %s: %s", id.Status, id.StatusReason)
			continue
		}
		res.Delivered++
	}
	return res, nil
}

// waitMessage polls c's inbox every 20 ms until a message matches.
func waitMessage(ctx context.Context, c *client.Client, match func(mailbox.Message) bool, deadline time.Time) (mailbox.Message, error) {
	for {
		l, err := c.List(ctx, mailbox.ListOptions{Limit: 50})
		if err != nil {
			return mailbox.Message{}, err
		}
		for _, m := range l.Messages {
			if match(m) {
				return m, nil
			}
		}
		if time.Now().After(deadline) {
			return mailbox.Message{}, fmt.Errorf("not in the inbox by %v", deadline.Format(time.TimeOnly))
		}
		select {
		case <-ctx.Done():
			return mailbox.Message{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// countWriter counts what passes through it to w.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// measureSMTPIn is measure for ReceiveFile: disk and peak RSS around it,
// wire from the system's proxy where it has one.
func measureSMTPIn(ctx context.Context, sys system, path string, size int64, rcpts []string, subject string) (Result, error) {
	rs, ok := sys.(smtpReceiver)
	if !ok {
		return Result{System: sys.name(), Refused: "no mail exchanger"}, nil
	}
	pids := sys.pids()
	rssOf(pids, true)
	w0 := sys.wire()
	r0, _, err := sys.disk(rcpts)
	if err != nil {
		return Result{}, err
	}
	res, err := rs.ReceiveFile(ctx, path, size, rcpts, subject)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %s: %w", sys.name(), subject, err)
	}
	r1, _, err := sys.disk(rcpts)
	if err != nil {
		return Result{}, err
	}
	res.System = sys.name()
	if res.WireBytes == 0 {
		// A system that did not count its SMTP bytes itself (a peer, whose
		// proxy did); Pullmail's counting proxy is on its HTTPS port and
		// sees other traffic than this.
		res.WireBytes = sys.wire() - w0
	}
	res.DiskBytes = r1 - r0
	res.PeakRSS = rssOf(pids, false)
	return res, nil
}

// smtpInCases runs workload 6: the attachment of size into rcpt's MX on
// every system, then again in a new message.
func smtpInCases(ctx context.Context, systems []system, path string, size int64, rcpt string, logf func(string, ...any)) ([]Case, error) {
	var cases []Case
	for _, what := range []string{"w6 SMTP in", "w6 SMTP in again"} {
		c := Case{Workload: 6, Size: size, Recipients: 1, Domains: 1}
		for _, sys := range systems {
			res, err := measureSMTPIn(ctx, sys, path, size, []string{rcpt}, fmt.Sprintf("%s %s", what, mib(size)))
			if err != nil {
				return nil, err
			}
			logf("%s %s %s: %s", what, mib(size), sys.name(), res.brief())
			c.Results = append(c.Results, res)
		}
		cases = append(cases, c)
	}
	return cases, nil
}

// smtpInTitle explains workload 6's table.
func smtpInTitle(again bool) string {
	if again {
		return "**Workload 6b: the same attachment again by SMTP** in a new message: what the MX adds to its disk. " +
			"Pullmail's MX decodes the attachment and finds it already stored; the peers store the message again."
	}
	return strings.Join([]string{"**Workload 6: one message with an attachment by SMTP into the recipient's MX** (issue 15),",
		"the benchmark as the sending MTA, base64 in 76-character lines. Time: connecting to the MX to its 250 after DATA",
		"(Pullmail's MX has then converted the MIME, stored every decoded part content-addressed and delivered the",
		"message complete; the peers have stored the message). Disk ÷ payload is against the decoded attachment's size",
		"(base64 on the wire is 1.37× that)."}, " ")
}
