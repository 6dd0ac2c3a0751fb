package mta

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/smtp"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/mimeconv"
	"github.com/pullmail/pullmail/placeholder"
)

// SMTP delivery (docs/PROTOCOL.md §13.10): a push job whose domain is an
// SMTP peer (discovery.Peer) is delivered by SMTP to the domain's mail
// exchangers instead of pushed. The job, its retries, its horizon and its
// delivery-status notice are a push's; what differs is the attempt.

// SMTPConfig configures delivery to SMTP domains. The zero value sends to
// port 25 of every MX, opportunistic STARTTLS, no DKIM signature.
type SMTPConfig struct {
	// Peers says how each domain takes mail; nil: every domain is a
	// Pullmail domain (the MTA pushes to all).
	Peers func(ctx context.Context, domain string) (discovery.Peer, error)
	// Resolver resolves the MX hosts' addresses (nil: the system's).
	Resolver *net.Resolver
	// Port is the port dialled on every mail exchanger: 25, but for tests
	// and the sandbox, whose exchangers listen elsewhere.
	Port int
	// RootCAs verify the exchangers' certificates (nil: the system's).
	// Verification is opportunistic (RFC 7435): an exchanger whose
	// certificate does not verify is used over unverified TLS, one without
	// STARTTLS in clear; DeliveryState records which.
	RootCAs *x509.CertPool
	// DKIM signs every message (ed25519-sha256 and rsa-sha256 selectors,
	// LoadDKIM); none: unsigned.
	DKIM []DKIMKey
	// AllowPrivate lets exchangers be on loopback and private addresses
	// (tests, the sandbox).
	AllowPrivate bool
	// Timeout bounds a connection and each command (default 5 minutes,
	// RFC 5321 §4.5.3.2).
	Timeout time.Duration
	// STS returns a domain's MTA-STS policy (RFC 8461; discovery.STS's
	// Policy), nil when it has none; nil STS: no domain is asked.
	STS func(ctx context.Context, domain string) (*discovery.STSPolicy, error)
	// Connection reuse (smtppool.go): how long a session waits, idle, for
	// the next message to its destination (default 30 s; negative: a
	// session per message), how many messages it carries at most (default
	// 100), and how many sessions a destination has at once (default 8).
	IdleTimeout time.Duration
	MaxPerConn  int
	MaxConns    int
}

// DKIMKey is a signing key and its selector (pullmail dkim makes them).
type DKIMKey struct {
	Selector string
	Signer   crypto.Signer
}

// smtpResult is what one SMTP attempt came to for each recipient.
type smtpResult struct {
	delivered []string
	refused   map[string]string // recipient → the server's answer (5xx)
	deferred  map[string]string // recipient → the server's answer (4xx)
	host      string
	tls       string // "verified", "unverified" or "none"
	sts       STSMode
}

// STSMode is the MTA-STS mode a delivery was made under ("" without a
// policy); see discovery.STSMode.
type STSMode = discovery.STSMode

// deliverSMTP makes one attempt at delivering p to an SMTP domain: each MX
// in preference order, each of its addresses, until one takes the message.
// Under an MTA-STS policy in mode enforce (RFC 8461 §5) only the MX that
// match the policy are tried, and only over STARTTLS with a certificate
// valid for the MX name: failing that the attempt fails as temporary,
// never in clear. In mode testing every MX is tried as without a policy,
// and what enforce would have refused is logged and counted.
func (m *MTA) deliverSMTP(ctx context.Context, p PushPayload, peer discovery.Peer) (*smtpResult, error) {
	msg, err := placeholder.Parse(p.Placeholder, placeholder.Limits{})
	if err != nil {
		return nil, final(fmt.Errorf("the queued copy does not parse: %w", err))
	}
	sig, err := m.signDKIM(ctx, msg)
	if err != nil {
		return nil, storageError(fmt.Errorf("signing %s: %w", p.MessageID, err))
	}
	pol := m.stsPolicy(ctx, p.Domain)
	var lastErr error
	for _, h := range peer.Hosts {
		if pol != nil && !pol.MatchMX(h.Host) {
			m.stsFailure(pol, "mx_mismatch", h.Host, fmt.Errorf("%s is not one of the policy's mx %q", h.Host, pol.MX))
			if pol.Mode == discovery.STSEnforce {
				lastErr = fmt.Errorf("MX %s is not in %s's MTA-STS policy (mx %s)", h.Host, p.Domain, strings.Join(pol.MX, ", "))
				continue
			}
		}
		addrs, err := m.mxAddrs(ctx, h.Host)
		if err != nil {
			lastErr = err
			continue
		}
		for _, a := range addrs {
			res, err := m.smtpAttempt(ctx, p, msg, sig, h.Host, a, pol)
			if err == nil {
				return res, nil
			}
			var f *failure
			if errors.As(err, &f) && f.final {
				return nil, err
			}
			m.cfg.Log.Warn("mta: mail exchanger failed", "domain", p.Domain, "mx", h.Host, "addr", a, "err", err)
			lastErr = err
		}
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("%s has no mail exchanger address", p.Domain)
	}
	return nil, temporary(fmt.Errorf("delivering to %s by SMTP: %w", p.Domain, lastErr))
}

// stsPolicy returns domain's MTA-STS policy in mode enforce or testing,
// nil for none (no STS configured, no policy, mode none). A policy that
// cannot be had is no policy (RFC 8461 §5.1: deliver as without one),
// logged and counted.
func (m *MTA) stsPolicy(ctx context.Context, domain string) *discovery.STSPolicy {
	if m.cfg.SMTP.STS == nil {
		return nil
	}
	pol, err := m.cfg.SMTP.STS(ctx, domain)
	if err != nil {
		m.cfg.Log.Warn("mta: no MTA-STS policy to be had; delivering without", "domain", domain, "err", err)
		m.metrics.sts.WithLabelValues("", "policy_fetch").Inc()
	}
	if pol == nil || pol.Mode == discovery.STSNone {
		return nil
	}
	return pol
}

// stsFailure logs and counts what pol refuses (enforce) or would refuse
// (testing).
func (m *MTA) stsFailure(pol *discovery.STSPolicy, reason, mx string, err error) {
	m.metrics.sts.WithLabelValues(string(pol.Mode), reason).Inc()
	if pol.Mode == discovery.STSEnforce {
		m.cfg.Log.Warn("mta: MTA-STS policy refuses the mail exchanger", "domain", pol.Domain, "mx", mx, "reason", reason, "err", err)
		return
	}
	m.cfg.Log.Warn("mta: MTA-STS policy in mode testing would refuse the mail exchanger; delivering anyway",
		"domain", pol.Domain, "mx", mx, "reason", reason, "err", err)
}

// mxAddrs resolves a mail exchanger; private addresses are refused unless
// AllowPrivate (a domain's MX must not lead the MTA into the operator's
// network).
func (m *MTA) mxAddrs(ctx context.Context, host string) ([]string, error) {
	r := m.cfg.SMTP.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", host, err)
	}
	var out []string
	for _, ip := range ips {
		ip = ip.Unmap()
		if !m.cfg.SMTP.AllowPrivate && privateAddr(ip) {
			m.cfg.Log.Warn("mta: mail exchanger on a private address refused", "mx", host, "addr", ip)
			continue
		}
		port := m.cfg.SMTP.Port
		if port == 0 {
			port = 25
		}
		out = append(out, net.JoinHostPort(ip.String(), strconv.Itoa(port)))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no public address", host)
	}
	return out, nil
}

func privateAddr(ip netip.Addr) bool {
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || netip.MustParsePrefix("100.64.0.0/10").Contains(ip)
}

// signDKIM returns the DKIM-Signature fields for msg as Compose writes it,
// one per key: Compose runs once for the signatures, once more on the wire,
// and writes the same bytes both times.
func (m *MTA) signDKIM(ctx context.Context, msg *placeholder.Message) ([]byte, error) {
	var out []byte
	for _, k := range m.cfg.SMTP.DKIM {
		s, err := dkim.NewSigner(&dkim.SignOptions{Domain: m.cfg.Domain, Selector: k.Selector, Signer: k.Signer,
			HeaderKeys: []string{"From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
				"MIME-Version", "Content-Type", "Reply-To", "Sender"},
			// Relaxed survives the re-folding and white-space changes of
			// relays on the way (RFC 6376 §3.4).
			HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed})
		if err != nil {
			return nil, err
		}
		if err := mimeconv.Compose(ctx, s, msg, m.cfg.Resources, mimeconv.ComposeOptions{}); err != nil {
			s.Close()
			return nil, err
		}
		if err := s.Close(); err != nil {
			return nil, err
		}
		out = append(out, s.Signature()...)
	}
	return out, nil
}

// smtpAttempt delivers over one session with addr: an idle one of the
// destination's if there is one (smtppool.go), else a new connection.
func (m *MTA) smtpAttempt(ctx context.Context, p PushPayload, msg *placeholder.Message, sig []byte, host, addr string, pol *discovery.STSPolicy) (*smtpResult, error) {
	timeout := m.cfg.SMTP.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	res := &smtpResult{host: host, refused: map[string]string{}, deferred: map[string]string{}}
	enforce := pol != nil && pol.Mode == discovery.STSEnforce
	if pol != nil {
		res.sts = pol.Mode
	}
	key := host + " " + addr
	if enforce {
		key += " sts"
	}
	dest, s, err := m.smtp.acquire(ctx, key)
	if err != nil {
		return nil, temporary(fmt.Errorf("waiting for a session with %s: %w", host, err))
	}
	if s != nil {
		s.conn.SetDeadline(time.Now().Add(timeout))
		if err := s.c.Reset(); err != nil {
			// The exchanger ended the idle session: a new one.
			s.c.Close()
			s = nil
		}
	}
	session := "reused"
	if s == nil {
		session = "new"
		if s, err = m.smtpConnect(ctx, host, addr, timeout, pol); err != nil {
			m.smtp.release(key, dest, nil)
			return nil, err
		}
	}
	res.tls = s.tls
	keep := false
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer func() {
		switch {
		case !stop() || !keep: // cut short, or the session is in doubt
			s.c.Close()
			s = nil
		case s.used >= m.perConn():
			go s.close()
			s = nil
		}
		m.smtp.release(key, dest, s)
	}()
	s.used++
	m.metrics.smtpSessions.WithLabelValues(session).Inc()
	if err := s.c.Mail(p.Author); err != nil {
		return nil, smtpError("MAIL FROM", err)
	}
	var ok []string
	for _, r := range p.Recipients {
		err := s.c.Rcpt(r)
		var te *textproto.Error
		switch {
		case err == nil:
			ok = append(ok, r)
		case errors.As(err, &te) && te.Code >= 500:
			res.refused[r] = answer(te)
		case errors.As(err, &te):
			res.deferred[r] = answer(te)
		default:
			return nil, temporary(fmt.Errorf("RCPT TO: %w", err))
		}
	}
	if len(ok) == 0 {
		keep = true // RSET before the next transaction
		return res, nil
	}
	w, err := s.c.Data()
	if err != nil {
		return nil, smtpError("DATA", err)
	}
	s.conn.SetDeadline(time.Now().Add(timeout + 10*time.Minute))
	if _, err := w.Write(sig); err != nil {
		return nil, temporary(fmt.Errorf("sending the message: %w", err))
	}
	if err := mimeconv.Compose(ctx, w, msg, m.cfg.Resources, mimeconv.ComposeOptions{}); err != nil {
		return nil, temporary(fmt.Errorf("sending the message: %w", err))
	}
	if err := w.Close(); err != nil {
		return nil, smtpError("the end of DATA", err)
	}
	res.delivered = ok
	keep = true
	return res, nil
}

// perConn is how many messages one session carries at most.
func (m *MTA) perConn() int {
	if m.cfg.SMTP.MaxPerConn > 0 {
		return m.cfg.SMTP.MaxPerConn
	}
	return DefaultSMTPPerConn
}

// smtpConnect dials addr, says EHLO as this domain and starts TLS when
// offered: verified for host if the certificate allows, else unverified
// (opportunistic TLS, RFC 7435), over a new connection since a failed
// handshake leaves the first one unusable. Under pol in mode enforce,
// STARTTLS verified for host is required (RFC 8461 §4.2): anything less
// is a temporary failure; in mode testing it is logged and counted.
func (m *MTA) smtpConnect(ctx context.Context, host, addr string, timeout time.Duration, pol *discovery.STSPolicy) (*smtpSession, error) {
	enforce := pol != nil && pol.Mode == discovery.STSEnforce
	for _, verify := range []bool{true, false} {
		d := net.Dialer{Timeout: 30 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, temporary(fmt.Errorf("connecting to %s (%s): %w", host, addr, err))
		}
		conn.SetDeadline(time.Now().Add(timeout))
		c, err := smtp.NewClient(conn, host)
		if err != nil {
			conn.Close()
			return nil, smtpError("the greeting", err)
		}
		if err := c.Hello(m.cfg.Domain); err != nil {
			c.Close()
			return nil, smtpError("EHLO", err)
		}
		if ok, _ := c.Extension("STARTTLS"); !ok {
			if pol != nil {
				err := fmt.Errorf("%s does not offer STARTTLS", host)
				m.stsFailure(pol, "starttls", host, err)
				if enforce {
					c.Close()
					return nil, temporary(fmt.Errorf("%s's MTA-STS policy requires TLS: %w", pol.Domain, err))
				}
			}
			return &smtpSession{c: c, conn: conn, tls: "none"}, nil
		}
		err = c.StartTLS(&tls.Config{ServerName: host, RootCAs: m.cfg.SMTP.RootCAs, InsecureSkipVerify: !verify,
			MinVersion: tls.VersionTLS12})
		if err == nil {
			s := &smtpSession{c: c, conn: conn, tls: "verified"}
			if !verify {
				s.tls = "unverified"
			}
			return s, nil
		}
		c.Close()
		var ve *tls.CertificateVerificationError
		if !verify || !errors.As(err, &ve) {
			return nil, temporary(fmt.Errorf("STARTTLS with %s: %w", host, err))
		}
		if pol != nil {
			m.stsFailure(pol, "certificate", host, err)
			if enforce {
				return nil, temporary(fmt.Errorf("%s's MTA-STS policy requires a certificate valid for %s: %w", pol.Domain, host, err))
			}
		}
		m.cfg.Log.Info("mta: mail exchanger's certificate does not verify; using TLS unverified", "mx", host, "err", err)
	}
	return nil, temporary(fmt.Errorf("STARTTLS with %s failed", host))
}

func answer(te *textproto.Error) string { return strconv.Itoa(te.Code) + " " + te.Msg }

// smtpError classifies a server's answer: 5xx is final (refused), 4xx and
// a broken connection temporary.
func smtpError(step string, err error) error {
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return refused(fmt.Errorf("%s: the server answered %s", step, answer(te)))
	}
	return temporary(fmt.Errorf("%s: %w", step, err))
}

// deferredJob is the push job that retries the recipients an exchanger
// answered 4xx (res.deferred) while it took the message for others: the
// same copy for fewer recipients, its own key. It starts as deferred, with
// the exchanger's answers as its last error and outcome (Deliveries).
func (m *MTA) deferredJob(j meta.Job, p PushPayload, res *smtpResult, now time.Time) (meta.Job, error) {
	rcpts := make([]string, 0, len(res.deferred))
	for r := range res.deferred {
		rcpts = append(rcpts, r)
	}
	slices.Sort(rcpts)
	p.Recipients = rcpts
	p.Via, p.MX, p.TLS = string(discovery.PeerSMTP), res.host, res.tls
	p.Outcome = map[string]RecipientOutcome{}
	for r, a := range res.deferred {
		p.Outcome[r] = RecipientOutcome{State: DeliveryDeferred, Reply: a}
	}
	pb, err := json.Marshal(p)
	if err != nil {
		return meta.Job{}, err
	}
	sum := sha256.Sum256([]byte(strings.Join(rcpts, "\n")))
	return meta.Job{Kind: JobPush, Key: j.Key + ":deferred:" + hex.EncodeToString(sum[:6]), Payload: pb,
		NextTry: now.Add(m.cfg.Backoff(1)), Created: now, Updated: now, Expires: j.Expires,
		LastError: p.Domain + "'s mail exchanger " + res.host + " deferred: " + refusedText(res.deferred)}, nil
}

// refusedText says, for a notice, what each refused recipient's exchanger
// answered.
func refusedText(r map[string]string) string {
	var b bytes.Buffer
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %s; ", k, r[k])
	}
	return strings.TrimSuffix(b.String(), "; ")
}
