// Package imapd is the IMAP4rev2 server (RFC 9051) that lets existing mail
// clients read a Pullmail mailbox. It is built on emersion's go-imap v2
// server (the protocol state machine and wire codec) and works only through
// the mailbox service with the authenticated principal in the context
// (auth.WithPrincipal), never on the metadata store, so that what a client
// sees and changes is what the webmail, the CLI and JMAP see and change.
//
// Mailboxes are the folders (docs/PROTOCOL.md §8.18, "IMAP"): INBOX, Sent,
// Drafts, Trash, Archive, Junk and Requests with their SPECIAL-USE
// attributes (RFC 6154), and the user's own folders under their own names.
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
)

// Mailbox is the part of the mailbox service (mailbox.Service) a session
// uses; every call carries the session's principal in its context.
type Mailbox interface {
	Folders(ctx context.Context) (mailbox.FolderList, error)
	CreateFolder(ctx context.Context, name string) (mailbox.FolderInfo, error)
	DeleteFolder(ctx context.Context, name string) error
	FolderState(ctx context.Context, folder string) (meta.FolderState, error)
	FolderIndex(ctx context.Context, folder string, changedSince int64) ([]meta.IndexEntry, error)
	SetKeywords(ctx context.Context, id string, seen *bool, add, remove []string) (mailbox.Message, error)
	Get(ctx context.Context, id string) (mailbox.Message, error)
	Raw(ctx context.Context, id string) (io.ReadCloser, error)
	Move(ctx context.Context, id, folder string) (mailbox.Message, error)
	Delete(ctx context.Context, id string) error
	Purge(ctx context.Context, id string) error
}

var _ Mailbox = (*mailbox.Service)(nil)

// Defaults of Config's limits.
const (
	DefaultMaxConnsPerUser = 20
	DefaultMaxConnsPerAddr = 50
	// DefaultIdlePoll keeps a delivery's wake-up of an IDLE client well
	// under a second.
	DefaultIdlePoll = 250 * time.Millisecond
)

// Config is what New needs.
type Config struct {
	Mailbox Mailbox
	// Password checks a user's address and password (LOGIN and
	// AUTHENTICATE PLAIN); Token checks one of the domain's access tokens
	// (AUTHENTICATE OAUTHBEARER, RFC 7628). They are the submission
	// listeners' functions (server.startSubmission): one auth path.
	Password func(ctx context.Context, address, password string) (auth.Principal, error)
	Token    func(ctx context.Context, token string) (auth.Principal, error)
	// TLS is the server's certificate: for STARTTLS, or for the listener
	// the caller wraps for implicit TLS. Authentication is refused on a
	// connection that is not TLS.
	TLS *tls.Config
	// MaxConnsPerUser and MaxConnsPerAddr bound the connections of one
	// authenticated user and of one remote IP address, so that one client
	// cannot take the server's sockets (0: the defaults).
	MaxConnsPerUser, MaxConnsPerAddr int
	// IdlePoll is how often an IDLE session reads its mailbox's index
	// for changes (0: DefaultIdlePoll).
	IdlePoll time.Duration
	Log      *slog.Logger
}

// Server serves IMAP on any number of listeners. It is safe for
// concurrent use.
type Server struct {
	cfg  Config
	imap *imapserver.Server
	ctx  context.Context
	stop context.CancelFunc

	mu     sync.Mutex
	byUser map[int64]int
	byAddr map[string]int
}

// New returns a server; ctx bounds every session's calls to the mailbox.
func New(ctx context.Context, cfg Config) *Server {
	if cfg.MaxConnsPerUser <= 0 {
		cfg.MaxConnsPerUser = DefaultMaxConnsPerUser
	}
	if cfg.MaxConnsPerAddr <= 0 {
		cfg.MaxConnsPerAddr = DefaultMaxConnsPerAddr
	}
	if cfg.IdlePoll <= 0 {
		cfg.IdlePoll = DefaultIdlePoll
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(ctx)
	s := &Server{cfg: cfg, ctx: ctx, stop: stop, byUser: map[int64]int{}, byAddr: map[string]int{}}
	s.imap = imapserver.New(&imapserver.Options{
		NewSession: s.newSession,
		Caps: imap.CapSet{
			imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {},
			imap.CapNamespace: {}, imap.CapSpecialUse: {}, imap.CapListStatus: {},
			imap.CapUnselect: {}, imap.CapMove: {}, imap.CapUIDPlus: {},
			// Not LITERAL+ nor ID: go-imap v2.0.0-beta.8's server handles
			// neither (it offers LITERAL-, RFC 7888, by itself).
		},
		TLSConfig: cfg.TLS,
		Logger:    slogPrintf{cfg.Log},
	})
	return s
}

// Serve accepts connections on l until Close; l is plain (STARTTLS
// offered) or already TLS (implicit TLS, RFC 8314).
func (s *Server) Serve(l net.Listener) error {
	if err := s.imap.Serve(l); err != nil {
		return fmt.Errorf("imap: %w", err)
	}
	return nil
}

// Close stops the listeners and ends every session.
func (s *Server) Close() error {
	s.stop()
	return s.imap.Close()
}

// slogPrintf adapts the library's Printf logger to slog.
type slogPrintf struct{ l *slog.Logger }

func (p slogPrintf) Printf(format string, args ...any) { p.l.Warn(fmt.Sprintf(format, args...)) }

func remoteIP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	ip := remoteIP(c.NetConn())
	s.mu.Lock()
	if s.byAddr[ip] >= s.cfg.MaxConnsPerAddr {
		s.mu.Unlock()
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Code: imap.ResponseCodeLimit, Text: "too many connections from your address"}
	}
	s.byAddr[ip]++
	s.mu.Unlock()
	return &session{srv: s, conn: c, ip: ip}, nil, nil
}

// session is one connection's state. The library calls its methods one at
// a time (a connection's commands are sequential), except Idle's stop.
type session struct {
	srv  *Server
	conn *imapserver.Conn
	ip   string
	ctx  context.Context // with the principal, once authenticated
	p    auth.Principal
	user bool // counted in srv.byUser
	sel  *selected
}

var _ imapserver.SessionIMAP4rev2 = (*session)(nil)
var _ imapserver.SessionSASL = (*session)(nil)

// Close implements imapserver.Session: it releases the connection's
// places in the limits.
func (s *session) Close() error {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if s.srv.byAddr[s.ip]--; s.srv.byAddr[s.ip] <= 0 {
		delete(s.srv.byAddr, s.ip)
	}
	if s.user {
		if s.srv.byUser[s.p.UserID]--; s.srv.byUser[s.p.UserID] <= 0 {
			delete(s.srv.byUser, s.p.UserID)
		}
	}
	return nil
}

// authenticated makes p the session's principal, unless the user has
// MaxConnsPerUser sessions already.
func (s *session) authenticated(p auth.Principal) error {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if s.srv.byUser[p.UserID] >= s.srv.cfg.MaxConnsPerUser {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit, Text: "too many connections for this user"}
	}
	s.srv.byUser[p.UserID]++
	s.user, s.p = true, p
	s.ctx = auth.WithPrincipal(s.srv.ctx, p)
	return nil
}

// Login implements imapserver.Session (LOGIN; the library refuses it
// before TLS).
func (s *session) Login(username, password string) error {
	if s.srv.cfg.Password == nil {
		return imapserver.ErrAuthFailed
	}
	p, err := s.srv.cfg.Password(s.srv.ctx, username, password)
	if err != nil {
		s.srv.cfg.Log.Info("imap login failed", "peer", s.ip, "err", err)
		return imapserver.ErrAuthFailed
	}
	return s.authenticated(p)
}

// AuthenticateMechanisms implements imapserver.SessionSASL.
func (s *session) AuthenticateMechanisms() []string {
	m := []string{sasl.Plain}
	if s.srv.cfg.Token != nil {
		m = append(m, sasl.OAuthBearer)
	}
	return m
}

// Authenticate implements imapserver.SessionSASL: PLAIN with the user's
// password, OAUTHBEARER with an access token of the domain's (whose
// principal must match the authorization identity, when one is given).
func (s *session) Authenticate(mech string) (sasl.Server, error) {
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && !strings.EqualFold(identity, username) {
				return imapserver.ErrAuthFailed
			}
			return s.Login(username, password)
		}), nil
	case sasl.OAuthBearer:
		if s.srv.cfg.Token == nil {
			break
		}
		return sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			p, err := s.srv.cfg.Token(s.srv.ctx, o.Token)
			if err != nil || (o.Username != "" && !strings.EqualFold(o.Username, p.Address)) {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			if err := s.authenticated(p); err != nil {
				return &sasl.OAuthBearerError{Status: "invalid_request"}
			}
			return nil
		}), nil
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "unsupported mechanism"}
}

// systemNames are the IMAP names of the system folders: INBOX as RFC 9051
// spells it, the others capitalized, each with its RFC 6154 attribute.
var systemNames = []struct {
	folder meta.Folder
	name   string
	attr   imap.MailboxAttr
}{
	{meta.Inbox, "INBOX", ""},
	{meta.Drafts, "Drafts", imap.MailboxAttrDrafts},
	{meta.Sent, "Sent", imap.MailboxAttrSent},
	{meta.Archive, "Archive", imap.MailboxAttrArchive},
	{meta.Junk, "Junk", imap.MailboxAttrJunk},
	{meta.Trash, "Trash", imap.MailboxAttrTrash},
	{meta.Requests, "Requests", ""},
}

// FolderOf is the folder an IMAP mailbox name means: a system folder by
// its IMAP name (INBOX in any case, RFC 9051 §5.1), else the user folder
// of that name.
func FolderOf(name string) meta.Folder {
	if strings.EqualFold(name, "INBOX") {
		return meta.Inbox
	}
	for _, n := range systemNames {
		if n.name == name {
			return n.folder
		}
	}
	return meta.Folder(name)
}

// MailboxName is the IMAP name of a folder (FolderOf's inverse).
func MailboxName(f meta.Folder) string {
	for _, n := range systemNames {
		if n.folder == f {
			return n.name
		}
	}
	return string(f)
}

func specialUse(f meta.Folder) imap.MailboxAttr {
	for _, n := range systemNames {
		if n.folder == f {
			return n.attr
		}
	}
	return ""
}

// imapErr turns a mailbox error into a tagged NO with the RFC 5530 code
// that fits its kind; the client sees the service's message.
func imapErr(err error, what string) error {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return err
	}
	code := imap.ResponseCodeServerBug
	var e *errs.Error
	if errors.As(err, &e) {
		switch e.Kind {
		case errs.NotFound:
			code = imap.ResponseCodeNonExistent
		case errs.Conflict:
			code = imap.ResponseCodeAlreadyExists
		case errs.Invalid, errs.Forbidden:
			code = imap.ResponseCodeCannot
		case errs.TooLarge:
			code = imap.ResponseCodeTooBig
		case errs.Temporary:
			code = imap.ResponseCodeUnavailable
		}
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: fmt.Sprintf("%s: %s", what, e.Message)}
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: what + " failed"}
}
