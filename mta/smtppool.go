package mta

import (
	"context"
	"net"
	"net/smtp"
	"sync"
	"time"
)

// Connection reuse (docs/PROTOCOL.md §13.10): the SMTP sessions with a
// mail exchanger's address are kept open between messages, so that a burst
// of jobs to one destination makes a few connections (and TLS handshakes)
// rather than one per message. A destination is a host, an address and
// whether the session had to be verified TLS (an MTA-STS policy in mode
// enforce): a session made opportunistically is never lent to a delivery
// that requires more. At most SMTPConfig.MaxConns sessions per destination
// are in use at once (jobs beyond wait for one); an idle session is closed
// after SMTPConfig.IdleTimeout, a session after SMTPConfig.MaxPerConn
// messages; each reuse starts with RSET (RFC 5321 §4.1.1.5), which also
// tells whether the exchanger still holds the session.

// Defaults of connection reuse.
const (
	DefaultSMTPIdle    = 30 * time.Second
	DefaultSMTPPerConn = 100
	DefaultSMTPConns   = 8
)

// smtpSession is one open SMTP session with a destination.
type smtpSession struct {
	c     *smtp.Client
	conn  net.Conn
	tls   string // "verified", "unverified" or "none"
	used  int    // transactions made on it
	timer *time.Timer
}

// close ends the session politely (QUIT, a short wait) and closes it.
func (s *smtpSession) close() {
	s.conn.SetDeadline(time.Now().Add(5 * time.Second))
	_ = s.c.Quit()
	s.c.Close()
}

// smtpDest is one destination's sessions: sem holds a token per session
// in use, idle the open ones waiting; refs counts the callers holding or
// waiting for a token, so that an unused destination is forgotten.
type smtpDest struct {
	sem  chan struct{}
	refs int
	idle []*smtpSession
}

// smtpPool is the MTA's open SMTP sessions, by destination. It is safe for
// concurrent use.
type smtpPool struct {
	idleFor time.Duration
	conns   int

	mu    sync.Mutex
	dests map[string]*smtpDest
}

func newSMTPPool(idle time.Duration, conns int) *smtpPool {
	return &smtpPool{idleFor: idle, conns: conns, dests: map[string]*smtpDest{}}
}

// acquire waits for a session slot of key and returns an idle session if
// there is one (nil: the caller dials). The caller hands the slot back with
// release, with or without a session.
func (p *smtpPool) acquire(ctx context.Context, key string) (*smtpDest, *smtpSession, error) {
	p.mu.Lock()
	d := p.dests[key]
	if d == nil {
		d = &smtpDest{sem: make(chan struct{}, p.conns)}
		p.dests[key] = d
	}
	d.refs++
	p.mu.Unlock()
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		p.mu.Lock()
		p.forget(key, d)
		p.mu.Unlock()
		return nil, nil, ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(d.idle) > 0 {
		s := d.idle[len(d.idle)-1]
		d.idle = d.idle[:len(d.idle)-1]
		if s.timer.Stop() {
			return d, s, nil
		}
		// Its idle time ran out just now: expire closes it.
	}
	return d, nil, nil
}

// release hands back the slot taken by acquire; s, when not nil, is a
// session in good order that waits, idle, for the next message.
func (p *smtpPool) release(key string, d *smtpDest, s *smtpSession) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s != nil && p.idleFor > 0 {
		s.conn.SetDeadline(time.Time{})
		s.timer = time.AfterFunc(p.idleFor, func() { p.expire(key, d, s) })
		d.idle = append(d.idle, s)
	} else if s != nil {
		go s.close()
	}
	<-d.sem
	p.forget(key, d)
}

// forget drops a caller's reference to d, and d once unused. p.mu held.
func (p *smtpPool) forget(key string, d *smtpDest) {
	d.refs--
	if d.refs == 0 && len(d.idle) == 0 && p.dests[key] == d {
		delete(p.dests, key)
	}
}

// expire closes s, idle for too long.
func (p *smtpPool) expire(key string, d *smtpDest, s *smtpSession) {
	p.mu.Lock()
	for i, o := range d.idle {
		if o == s {
			d.idle = append(d.idle[:i], d.idle[i+1:]...)
			break
		}
	}
	if d.refs == 0 && len(d.idle) == 0 && p.dests[key] == d {
		delete(p.dests, key)
	}
	p.mu.Unlock()
	s.close()
}

// closeIdle closes every idle session (the MTA stops).
func (p *smtpPool) closeIdle() {
	p.mu.Lock()
	var all []*smtpSession
	for key, d := range p.dests {
		for _, s := range d.idle {
			if s.timer.Stop() {
				all = append(all, s)
			}
		}
		d.idle = nil
		if d.refs == 0 {
			delete(p.dests, key)
		}
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Go(s.close)
	}
	wg.Wait()
}
