// Package smtpd is a domain's mail exchanger: an ESMTP server (RFC 5321)
// that takes mail from the rest of the world for this domain's users, never
// for anyone else (no relay), converts each message as it streams in
// (package mimeconv: decoded parts stored content-addressed, a record to
// write the original back) and delivers it to the recipients' inboxes
// through the mailbox service, complete at once.
//
// The protocol work is emersion's go-smtp (PIPELINING, 8BITMIME, SMTPUTF8,
// ENHANCEDSTATUSCODES, CHUNKING, SIZE, STARTTLS); this package decides what
// each command means here. The reply codes, and why, are docs/PROTOCOL.md
// §13.7.
package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/mimeconv"
	"github.com/pullmail/pullmail/resource"
)

// Users finds this domain's accounts (meta.Store has it).
type Users interface {
	UserByAddress(ctx context.Context, address string) (meta.User, error)
}

// Mailbox delivers a converted message (mailbox.Service has it).
type Mailbox interface {
	CollectorEpoch(ctx context.Context) (int64, error)
	ReceiveSMTP(ctx context.Context, d mailbox.SMTPDelivery) (mailbox.SMTPReceipt, error)
}

// Config configures a Server.
type Config struct {
	Domain    string // the domain whose users it takes mail for
	Hostname  string // its name in the greeting and in Received (default: Domain)
	TLS       *tls.Config
	Users     Users
	Mailbox   Mailbox
	Resources resource.Store
	// MaxSize is the largest message accepted, in bytes (default 1 GiB;
	// SIZE says it).
	MaxSize int64
	// MaxRecipients per message (default 100, RFC 5321 §4.5.3.1.8's
	// minimum a server must accept).
	MaxRecipients int
	// Timeout bounds each read and write of a connection (default 5
	// minutes, RFC 5321 §4.5.3.2's lowest).
	Timeout time.Duration
	// MaxErrors is how many recipients a session may have refused before
	// the server says 421 and closes it (default 20, Postfix's
	// smtpd_hard_error_limit): a directory-harvest probe or a pipelined
	// flood of bad RCPTs costs the server a bounded amount of work,
	// whatever its speed.
	MaxErrors int
	TempDir   string
	// Resolver answers the SPF, DKIM and DMARC queries (nil: the system's).
	Resolver *net.Resolver
	// Submission, when set, makes the server a submission agent for this
	// domain's users (submission.go) instead of its mail exchanger.
	Submission *Submission
	Log        *slog.Logger
	Clock      func() time.Time
}

// Server is the mail exchanger.
type Server struct {
	cfg Config
	srv *smtp.Server
	log *slog.Logger
}

// New returns a Server; Serve runs it.
func New(cfg Config) *Server {
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.Domain
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = 1 << 30
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = 100
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Log.With("component", "smtpd")}
	srv := smtp.NewServer(s)
	srv.Domain = cfg.Hostname
	srv.TLSConfig = cfg.TLS
	srv.MaxMessageBytes = cfg.MaxSize
	srv.MaxRecipients = cfg.MaxRecipients
	// Lines over RFC 5321's 1000 octets exist in real mail; the converter
	// keeps them exactly, so they are accepted (the limit bounds a line's
	// count, not memory: go-smtp does not buffer a line).
	srv.MaxLineLength = 1 << 20
	srv.ReadTimeout = cfg.Timeout
	srv.WriteTimeout = cfg.Timeout
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = slogLogger{s.log}
	s.srv = srv
	return s
}

// Serve accepts connections on l until Close. A listener of implicit TLS
// should be made over CloseOnWriteError(l) (Serve wraps plain connections
// itself).
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(closingListener{l})
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the server and closes its connections.
func (s *Server) Close() error { return s.srv.Close() }

// CloseOnWriteError returns l with connections that close themselves when
// a write fails. go-smtp ignores the errors of its reply writes, so a
// client that pipelines commands and never reads the replies (RFC 2920
// abuse) would otherwise keep its session reading and answering into a
// dead connection after the write timeout, for as long as it sends.
func CloseOnWriteError(l net.Listener) net.Listener { return closingListener{l} }

type closingListener struct{ net.Listener }

func (l closingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	switch c.(type) {
	case *tls.Conn, *closingConn: // go-smtp must see the *tls.Conn; it was made over one
		return c, nil
	}
	return &closingConn{Conn: c}, nil
}

type closingConn struct {
	net.Conn
	// last is set when the next reply is the session's last (a 421):
	// go-smtp writes it and would read on, so the write closes.
	last atomic.Bool
}

func (c *closingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil || c.last.Load() {
		c.Conn.Close()
	}
	return n, err
}

// closeAfterReply makes c close once the reply being made is written. go-smtp
// writes each reply line with one Write and flushes it, so the next write
// is that reply whole.
func closeAfterReply(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if cc, ok := c.(*closingConn); ok {
		cc.last.Store(true)
		return
	}
	c.Close() // not made by Serve: no reply, but closed all the same
}

type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) { l.l.Warn(fmt.Sprintf(format, v...)) }
func (l slogLogger) Println(v ...any)               { l.l.Warn(fmt.Sprint(v...)) }

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{s: s, c: c, ctx: ctx, cancel: cancel}, nil
}

type session struct {
	s      *Server
	c      *smtp.Conn
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	from   string
	rcpts  []string
	// principal is the authenticated user (submission only).
	principal *auth.Principal
	// refused counts the session's refused recipients (MaxErrors).
	refused int
}

var (
	errRelay = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Relaying denied: this server takes mail for its own domain only"}
	errNoRcpt      = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	errLineTooLong = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message refused: a line longer than 1 MiB"}
	errTemp          = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, please try again later"}
	errTooManyErrors = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many refused recipients, closing the connection"}
)

func (ss *session) Reset() {
	ss.mu.Lock()
	ss.from, ss.rcpts = "", nil
	ss.mu.Unlock()
}

func (ss *session) Logout() error {
	ss.cancel()
	return nil
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.s.cfg.Submission != nil && ss.principal == nil {
		return errAuthFirst
	}
	ss.from, ss.rcpts = from, nil
	return nil
}

// Rcpt takes a recipient only if it is a user of this domain: an address of
// another domain is a relay attempt (550 5.7.1), an unknown user 550 5.1.1.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	err := ss.rcpt(to)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code < 500 {
		return err
	}
	ss.mu.Lock()
	ss.refused++
	over := ss.refused >= ss.s.cfg.MaxErrors
	ss.mu.Unlock()
	if !over {
		return err
	}
	ss.s.log.Warn("too many refused recipients, closing", "remote", ss.remote(), "refused", ss.refused)
	closeAfterReply(ss.c.Conn())
	return errTooManyErrors
}

func (ss *session) rcpt(to string) error {
	addr, err := account.NormalizeAddress(to)
	if err != nil {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
	}
	if ss.s.cfg.Submission != nil { // an authenticated user may write to anyone
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if !slices.Contains(ss.rcpts, addr) {
			ss.rcpts = append(ss.rcpts, addr)
		}
		return nil
	}
	_, domain, _ := strings.Cut(addr, "@")
	if !strings.EqualFold(domain, ss.s.cfg.Domain) {
		ss.s.log.Info("relay refused", "remote", ss.remote(), "rcpt", addr)
		return errRelay
	}
	if _, err := ss.s.cfg.Users.UserByAddress(ss.ctx, addr); errors.Is(err, meta.ErrNotFound) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	} else if err != nil {
		ss.s.log.Error("looking up a recipient", "rcpt", addr, "err", err)
		return errTemp
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !slices.Contains(ss.rcpts, addr) {
		ss.rcpts = append(ss.rcpts, addr)
	}
	return nil
}

func (ss *session) remoteIP() net.IP {
	if a, ok := ss.c.Conn().RemoteAddr().(*net.TCPAddr); ok {
		return a.IP
	}
	return nil
}

func (ss *session) remote() string {
	if a := ss.c.Conn().RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Data converts the message as it streams in and delivers it; the 250
// reply means it is committed (kill -9 after it loses nothing; before it,
// the sender retries and the digest makes the retry deliver once).
func (ss *session) Data(r io.Reader) error {
	ss.mu.Lock()
	rcpts := append([]string(nil), ss.rcpts...)
	from := ss.from
	principal := ss.principal
	ss.mu.Unlock()
	if len(rcpts) == 0 {
		_, _ = io.Copy(io.Discard, r)
		return errNoRcpt
	}
	if ss.s.cfg.Submission != nil {
		return ss.submit(r, *principal, rcpts)
	}
	cfg := ss.s.cfg
	start := cfg.Clock()
	// Garbage collection's epoch before anything is stored: the delivery
	// checks that no collection ran meanwhile (mailbox.SMTPDelivery.Epoch).
	epoch, err := cfg.Mailbox.CollectorEpoch(ss.ctx)
	if err != nil {
		_, _ = io.Copy(io.Discard, r)
		ss.s.log.Error("reading the collector's epoch", "err", err)
		return errTemp
	}
	// DKIM reads a copy of the message as it streams in (one pass).
	ver := ss.s.startDKIM(ss.ctx)
	ra := newReadAhead(r, readAheadChunk, readAheadChunks)
	res, err := mimeconv.Convert(ss.ctx, io.TeeReader(ra, ver), cfg.Resources, mimeconv.Options{TempDir: cfg.TempDir})
	ra.Stop()
	sigs := ver.Wait()
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se // the size limit, as go-smtp says it
		}
		if errors.Is(err, smtp.ErrTooLongLine) {
			// Permanent: the same message would meet the same limit
			// again (a 451 made the sender retry for days).
			ss.s.log.Warn("message refused: a line over the limit", "remote", ss.remote())
			return errLineTooLong
		}
		ss.s.log.Error("converting a message", "remote", ss.remote(), "err", err)
		return errTemp
	}
	helo := ss.c.Hostname()
	auth := ss.s.authenticate(ss.ctx, ss.remoteIP(), helo, from, res.Message, sigs)
	recordAuthentication(res.Message, cfg.Hostname, auth.header(cfg.Hostname, from, helo))
	rec, err := json.Marshal(res.Record)
	if err != nil {
		return errTemp
	}
	recInfo, err := cfg.Resources.Put(ss.ctx, bytes.NewReader(rec), resource.PutOptions{Size: int64(len(rec))})
	if err != nil {
		ss.s.log.Error("storing a record", "err", err)
		return errTemp
	}
	d := mailbox.SMTPDelivery{
		Recipients: rcpts, Message: res.Message, Resources: append(res.Resources, recInfo),
		Record: recInfo.ID, Digest: res.Record.SHA256, Received: ss.received(), Epoch: epoch,
	}
	receipt, err := cfg.Mailbox.ReceiveSMTP(ss.ctx, d)
	if err != nil {
		if errs.KindOf(err) == errs.Invalid {
			ss.s.log.Warn("message refused", "remote", ss.remote(), "err", err)
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused: " + errs.CodeOf(err)}
		}
		ss.s.log.Error("delivering a message", "remote", ss.remote(), "err", err)
		return errTemp
	}
	ss.s.log.Info("received by SMTP", "remote", ss.remote(), "from", from, "rcpts", len(rcpts), "copies", len(receipt.Copies), "repeated", receipt.Repeated,
		"spf", auth.SPF, "dkim", len(sigs), "dmarc", auth.DMARC,
		"bytes", res.Record.Size, "resources", len(res.Resources), "took", cfg.Clock().Sub(start))
	return nil
}

// received is this hop's trace line (RFC 5321 §4.4), for the placeholder.
func (ss *session) received() string {
	with := "ESMTP"
	if _, ok := ss.c.TLSConnectionState(); ok {
		with = "ESMTPS"
	}
	ip := ss.remote()
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	helo := ss.c.Hostname()
	if helo == "" {
		helo = "unknown"
	}
	return fmt.Sprintf("from %s ([%s]) by %s with %s; %s", helo, ip, ss.s.cfg.Hostname, with,
		ss.s.cfg.Clock().UTC().Format(time.RFC1123Z))
}
