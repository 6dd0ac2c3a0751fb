package smtpd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/mimeconv"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// Submission makes a Server a message submission agent (RFC 6409, ports
// 587 with STARTTLS and 465 with implicit TLS) for existing mail clients:
// an authenticated user's message becomes a Pullmail send, to any mix of
// Pullmail and SMTP recipients (docs/PROTOCOL.md §13.11).
type Submission struct {
	// Password checks SASL PLAIN: the user's address and password.
	Password func(ctx context.Context, address, password string) (auth.Principal, error)
	// Token checks SASL OAUTHBEARER (RFC 7628): an access token of the
	// domain's, as the mailbox API takes it.
	Token func(ctx context.Context, token string) (auth.Principal, error)
	// Mailbox sends, as the principal in the context.
	Mailbox mailbox.API
}

var (
	errAuthFirst = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errNotYours  = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "From must be your own address"}
)

// AuthMechanisms implements smtp.AuthSession: none on the mail exchanger.
func (ss *session) AuthMechanisms() []string {
	if ss.s.cfg.Submission == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.OAuthBearer}
}

// Auth implements smtp.AuthSession.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	sub := ss.s.cfg.Submission
	if sub == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	done := func(p auth.Principal, err error) error {
		if err != nil {
			ss.s.log.Info("submission: authentication failed", "remote", ss.remote(), "mech", mech)
			return smtp.ErrAuthFailed
		}
		ss.mu.Lock()
		ss.principal = &p
		ss.mu.Unlock()
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return smtp.ErrAuthFailed
			}
			return done(sub.Password(ss.ctx, username, password))
		}), nil
	case sasl.OAuthBearer:
		return sasl.NewOAuthBearerServer(func(opts sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			p, err := sub.Token(ss.ctx, opts.Token)
			if err == nil && opts.Username != "" {
				if a, aerr := account.NormalizeAddress(opts.Username); aerr != nil || a != p.Address {
					err = errors.New("the token is another user's")
				}
			}
			if done(p, err) != nil {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			return nil
		}), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// submit converts a submitted message into a draft of the principal's and
// sends it: its parts are stored as the user's uploads, Bcc are the
// envelope's recipients the header does not name, and the headers only the
// server sets (Date, Message-ID, Received, …) are the server's.
func (ss *session) submit(r io.Reader, p auth.Principal, rcpts []string) error {
	cfg := ss.s.cfg
	ctx := auth.WithPrincipal(ss.ctx, p)
	up := uploadPutter{ctx: ctx, api: cfg.Submission.Mailbox}
	res, err := mimeconv.Convert(ctx, r, up, mimeconv.Options{TempDir: cfg.TempDir})
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se
		}
		ss.s.log.Error("submission: converting a message", "user", p.Address, "err", err)
		return errTemp
	}
	m := res.Message
	h := &m.Header
	if v, ok := h.Lookup(placeholder.HFrom); ok {
		addrs, err := mail.ParseAddressList(v.String())
		if err != nil || len(addrs) != 1 {
			return errNotYours
		}
		if a, err := account.NormalizeAddress(addrs[0].Address); err != nil || a != p.Address {
			return errNotYours
		}
	}
	for _, n := range placeholder.ServerOwned() {
		h.Del(n)
	}
	named := map[string]bool{}
	for _, n := range []string{placeholder.HTo, placeholder.HCc, placeholder.HBcc} {
		if addrs, err := mail.ParseAddressList(h.Get(n).String()); err == nil {
			for _, a := range addrs {
				if na, err := account.NormalizeAddress(a.Address); err == nil {
					named[na] = true
				}
			}
		}
	}
	var bcc []string
	if prev := h.Get(placeholder.HBcc); !prev.IsZero() {
		bcc = prev.List()
	}
	for _, rc := range rcpts {
		if !named[rc] {
			bcc = append(bcc, rc)
		}
	}
	if len(bcc) > 0 {
		h.SetString(placeholder.HBcc, strings.Join(bcc, ", "))
	}
	doc, err := json.Marshal(m)
	if err != nil {
		return errTemp
	}
	api := cfg.Submission.Mailbox
	draft, err := api.CreateDraft(ctx, doc)
	if err != nil {
		return submitError(ss, p, err)
	}
	// A client that retries after a lost reply sends the same bytes: one
	// send (the mailbox's Idempotency-Key, PROTOCOL §8.9).
	sent, err := api.Send(mailbox.WithIdempotencyKey(ctx, "smtp-submission:"+res.Record.SHA256), draft.ID)
	if errs.CodeOf(err) == "idempotency_key_reused" {
		// The same bytes were sent already (under another draft): the
		// retry is that send, not a second one.
		_ = api.Delete(ctx, draft.ID)
		ss.s.log.Info("submission repeated: sent once already", "user", p.Address)
		return nil
	}
	if err != nil {
		_ = api.Delete(ctx, draft.ID)
		return submitError(ss, p, err)
	}
	ss.s.log.Info("submitted", "user", p.Address, "msgid", sent.MessageID, "rcpts", len(rcpts), "bytes", res.Record.Size)
	return nil
}

func submitError(ss *session, p auth.Principal, err error) error {
	ss.s.log.Warn("submission refused", "user", p.Address, "err", err)
	switch errs.KindOf(err) {
	case errs.Invalid, errs.Forbidden, errs.TooLarge, errs.NotFound, errs.Conflict:
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused: " + errs.CodeOf(err)}
	}
	return errTemp
}

// uploadPutter stores each converted part as an upload of the user's (the
// mailbox's Upload), so that the draft may reference it.
type uploadPutter struct {
	ctx context.Context
	api mailbox.API
}

func (u uploadPutter) Put(_ context.Context, r io.Reader, opt resource.PutOptions) (resource.Info, error) {
	up, err := u.api.Upload(u.ctx, r, mailbox.UploadOptions{Digest: opt.Want, Size: opt.Size})
	if err != nil {
		return resource.Info{}, fmt.Errorf("storing a part: %w", err)
	}
	return resource.Info{ID: up.ContentID, Size: up.Size}, nil
}

// Open is never called: the placeholder of a submission breaks no limit
// that needs the fallback, and a submission that does is refused.
func (u uploadPutter) Open(context.Context, resource.ID) (resource.Object, error) {
	return nil, errs.E(errs.TooLarge, "document_too_large", "the message is too complex to send")
}
