package smtpd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/mail"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"github.com/pullmail/pullmail/placeholder"
)

// HAuthenticationResults is the header the mail exchanger records its
// checks in (RFC 8601).
const HAuthenticationResults = "Authentication-Results"

// Authentication is what the mail exchanger found out about where a message
// comes from: SPF for the envelope sender (RFC 7208), each DKIM signature
// (RFC 6376), and DMARC for the From domain (RFC 7489). Pullmail does not
// refuse mail on these (the screener, issue 17, weighs them); it records them.
type Authentication struct {
	SPF   spf.Result
	DKIM  []*dkim.Verification
	DMARC authres.ResultValue
	// DMARCPolicy is the From domain's published policy ("" without one).
	DMARCPolicy dmarc.Policy
	From        string // the From header's domain
}

// maxSignatures bounds the DKIM signatures verified per message: each costs
// a DNS query and a hash of the body.
const maxSignatures = 5

// dkimVerifier verifies DKIM signatures over a copy of the message as it
// streams in; Wait returns the verifications once the copy has ended.
type dkimVerifier struct {
	pw   *io.PipeWriter
	done chan struct{}
	res  []*dkim.Verification
	// tail is the copy's last bytes and body whether the empty line that
	// ends the header section has gone by: a message of header fields
	// only (RFC 5322 §3.5: the body is optional) gets one at the end, or
	// the verifier finds no header and no signature in it. An empty body
	// and a CRLF hash alike in both canonicalizations (RFC 6376 §3.4.3,
	// §3.4.4), so signatures are unchanged.
	tail []byte
	body bool
}

func (s *Server) startDKIM(ctx context.Context) *dkimVerifier {
	pr, pw := io.Pipe()
	// The line end before the first byte: a message that begins with the
	// empty line has its body at once.
	v := &dkimVerifier{pw: pw, done: make(chan struct{}), tail: []byte("\n")}
	go func() {
		defer close(v.done)
		res, err := dkim.VerifyWithOptions(pr, &dkim.VerifyOptions{
			LookupTXT:        func(name string) ([]string, error) { return s.resolver().LookupTXT(ctx, name) },
			MaxVerifications: maxSignatures,
		})
		if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
			res = nil // a message whose header does not parse has no usable signature
		}
		v.res = res
		// The verifier may stop early: keep draining, so that the
		// message's own reading never blocks on it.
		_, _ = io.Copy(io.Discard, pr)
	}()
	return v
}

// Write feeds the copy; it never fails (a verifier that gave up drains).
func (v *dkimVerifier) Write(p []byte) (int, error) {
	if !v.body {
		v.tail = append(v.tail, p...)
		v.body = bytes.Contains(v.tail, []byte("\n\r\n")) || bytes.Contains(v.tail, []byte("\n\n"))
		v.tail = v.tail[max(0, len(v.tail)-2):]
	}
	_, _ = v.pw.Write(p)
	return len(p), nil
}

// Wait ends the copy and returns the verifications.
func (v *dkimVerifier) Wait() []*dkim.Verification {
	if !v.body {
		_, _ = v.pw.Write([]byte("\r\n"))
	}
	v.pw.Close()
	<-v.done
	return v.res
}

func (s *Server) resolver() *net.Resolver {
	if s.cfg.Resolver != nil {
		return s.cfg.Resolver
	}
	return net.DefaultResolver
}

// authenticate runs SPF and DMARC, given the DKIM verifications.
func (s *Server) authenticate(ctx context.Context, ip net.IP, helo, mailFrom string, m *placeholder.Message, sigs []*dkim.Verification) Authentication {
	a := Authentication{DKIM: sigs}
	a.SPF, _ = spf.CheckHostWithSender(ip, helo, mailFrom, spf.WithContext(ctx), spf.WithResolver(s.resolver()))
	if addrs, err := mail.ParseAddressList(m.Header.Get(placeholder.HFrom).String()); err == nil && len(addrs) == 1 {
		if _, d, ok := strings.Cut(addrs[0].Address, "@"); ok {
			a.From = strings.ToLower(d)
		}
	}
	if a.From == "" {
		a.DMARC = authres.ResultPermError // RFC 7489 §6.6.1: one From address is needed
		return a
	}
	lookup := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) { return s.resolver().LookupTXT(ctx, name) }}
	rec, err := dmarc.LookupWithOptions(a.From, lookup)
	if errors.Is(err, dmarc.ErrNoPolicy) {
		if org := orgDomain(a.From); org != a.From {
			rec, err = dmarc.LookupWithOptions(org, lookup)
		}
	}
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		a.DMARC = authres.ResultNone
		return a
	case dmarc.IsTempFail(err):
		a.DMARC = authres.ResultTempError
		return a
	case err != nil:
		a.DMARC = authres.ResultPermError
		return a
	}
	a.DMARCPolicy = rec.Policy
	_, spfDomain, _ := strings.Cut(mailFrom, "@")
	if spfDomain == "" {
		spfDomain = helo
	}
	aligned := a.SPF == spf.Pass && alignedWith(a.From, spfDomain, rec.SPFAlignment)
	for _, v := range sigs {
		aligned = aligned || (v.Err == nil && alignedWith(a.From, v.Domain, rec.DKIMAlignment))
	}
	a.DMARC = authres.ResultFail
	if aligned {
		a.DMARC = authres.ResultPass
	}
	return a
}

// orgDomain is a domain's organizational domain (RFC 7489 §3.2), by the
// public suffix list.
func orgDomain(d string) string {
	if org, err := publicsuffix.EffectiveTLDPlusOne(d); err == nil {
		return org
	}
	return d
}

func alignedWith(from, other string, mode dmarc.AlignmentMode) bool {
	other = strings.ToLower(strings.TrimSuffix(other, "."))
	if mode == dmarc.AlignmentStrict {
		return from == other
	}
	return orgDomain(from) == orgDomain(other)
}

// header is the Authentication-Results value, authserv-id the mail
// exchanger's host name.
func (a Authentication) header(authserv, mailFrom, helo string) string {
	results := []authres.Result{&authres.SPFResult{Value: authres.ResultValue(a.SPF), From: mailFrom, Helo: helo}}
	if len(a.DKIM) == 0 {
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, v := range a.DKIM {
		r := &authres.DKIMResult{Value: authres.ResultPass, Domain: v.Domain, Identifier: v.Identifier}
		switch {
		case v.Err == nil:
		case dkim.IsTempFail(v.Err):
			r.Value = authres.ResultTempError
		case dkim.IsPermFail(v.Err):
			r.Value = authres.ResultPermError
		default:
			r.Value = authres.ResultFail
		}
		results = append(results, r)
	}
	results = append(results, &authres.DMARCResult{Value: a.DMARC, From: a.From})
	return authres.Format(authserv, results)
}

// recordAuthentication puts this server's Authentication-Results first in
// the placeholder and drops any that claim to be this server's (RFC 8601
// §5: a receiver must remove such forgeries).
func recordAuthentication(m *placeholder.Message, authserv, value string) {
	h := &m.Header
	keep := []string{value}
	for _, v := range h.Get(HAuthenticationResults).List() {
		id, _, _ := strings.Cut(strings.TrimSpace(v), ";")
		if !strings.EqualFold(strings.TrimSpace(id), authserv) {
			keep = append(keep, v)
		}
	}
	if len(keep) == 1 {
		h.SetString(HAuthenticationResults, value)
		return
	}
	h.Set(HAuthenticationResults, placeholder.List(keep...))
}
