package mta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
)

// EHL is the envelope header list of a first hop (docs/PROTOCOL.md §5.3).
var EHL = []string{placeholder.HMessageID, placeholder.HFrom, placeholder.HRecipientsDigest, placeholder.HBodyDigest}

// SignedExtras are signed too by the author's hop when the message has
// them (§12.1): a forwarder passes the message on, and must not be able to
// change what the reader sees of it.
var SignedExtras = []string{placeholder.HDate, placeholder.HSubject, placeholder.HThreadID, placeholder.HInReplyTo,
	placeholder.HReferences}

func (m *MTA) runPush(ctx context.Context, j meta.Job) error {
	var p PushPayload
	if err := json.Unmarshal(j.Payload, &p); err != nil {
		_, ferr := m.finish(ctx, j, m.outcome(j, final(fmt.Errorf("push payload: %w", err)), ""), nil, nil)
		return errors.Join(err, ferr)
	}
	via, sres, attempt := m.attempt(ctx, p)
	if ctx.Err() != nil {
		return attempt
	}
	o := m.outcome(j, attempt, p.Domain)
	// A payload that does not marshal (it just unmarshalled) keeps the
	// job's own: the delivery state is then the job's state alone.
	if pb, err := json.Marshal(recordOutcome(p, via, sres)); err == nil {
		o.payload = pb
	}
	var dsn *notice
	var deferred *meta.Job
	if attempt == nil && sres != nil {
		// SMTP: recipients the exchanger refused get a notice now;
		// those it deferred, a job of their own.
		if len(sres.refused) > 0 {
			q := p
			q.Recipients = nil
			for r := range sres.refused {
				q.Recipients = append(q.Recipients, r)
			}
			slices.Sort(q.Recipients)
			n, err := m.prepareNotice(ctx, q, p.Domain+"'s mail exchanger "+sres.host+" refused them: "+refusedText(sres.refused))
			if err != nil {
				m.cfg.Log.Error("mta: preparing a delivery-status notice", "key", j.Key, "err", err)
			}
			dsn = n
		}
		if len(sres.deferred) > 0 {
			dj, err := m.deferredJob(j, p, sres, o.now)
			if err != nil {
				return fmt.Errorf("the deferred recipients of %s: %w", j.Key, err)
			}
			deferred = &dj
		}
		m.cfg.Log.Info("mta: delivered by SMTP", "key", j.Key, "domain", p.Domain, "mx", sres.host, "tls", sres.tls, "mta_sts", sres.sts,
			"delivered", len(sres.delivered), "refused", len(sres.refused), "deferred", len(sres.deferred))
	}
	if o.giveUp {
		// The notice's text is stored before the transaction that may use
		// it (the resource store is not transactional); an unused one is
		// unreferenced and collected.
		n, err := m.prepareNotice(ctx, p, attempt.Error())
		if err != nil {
			m.cfg.Log.Error("mta: preparing a delivery-status notice", "key", j.Key, "err", err)
		}
		dsn = n
	}
	_, err := m.finish(ctx, j, o, func(tx meta.Tx) error {
		if deferred != nil {
			if _, err := tx.AddJob(ctx, *deferred); err != nil && !errors.Is(err, meta.ErrExists) {
				return fmt.Errorf("queueing the deferred recipients: %w", err)
			}
		}
		if dsn == nil {
			return nil
		}
		return m.insertNotice(ctx, tx, j, p, dsn)
	}, func(tx meta.Tx) error {
		if dsn == nil {
			return nil
		}
		return m.insertNotice(ctx, tx, j, p, dsn)
	})
	if err != nil {
		return fmt.Errorf("finishing push %s: %w", j.Key, err)
	}
	return attempt
}

// attempt makes one attempt at delivering p: by SMTP to a domain that takes
// mail so (docs/PROTOCOL.md §11.1.1), else by push. A domain that takes no
// mail (null_mx, no_mail_host) is a final failure. It returns how the
// domain takes mail ("" when discovery failed) and, for SMTP, what the
// exchanger answered each recipient, also when it took the message for
// none of them (the error then says so).
func (m *MTA) attempt(ctx context.Context, p PushPayload) (string, *smtpResult, error) {
	if m.cfg.SMTP.Peers != nil && p.Hop == nil {
		peer, err := m.cfg.SMTP.Peers(ctx, p.Domain)
		if err != nil {
			return "", nil, discoveryError(p.Domain, err)
		}
		if peer.Kind == discovery.PeerSMTP {
			res, err := m.deliverSMTP(ctx, p, peer)
			if err == nil && len(res.delivered) == 0 && len(res.deferred) == 0 {
				return string(peer.Kind), res, refused(fmt.Errorf("%s's mail exchanger %s refused every recipient: %s", p.Domain, res.host, refusedText(res.refused)))
			}
			if err == nil && len(res.delivered) == 0 {
				return string(peer.Kind), res, temporary(fmt.Errorf("%s's mail exchanger %s deferred: %s", p.Domain, res.host, refusedText(res.deferred)))
			}
			return string(peer.Kind), res, err
		}
	}
	return string(discovery.PeerPullmail), nil, m.push(ctx, p)
}

// recordOutcome is p with what an attempt found, for Deliveries.
func recordOutcome(p PushPayload, via string, res *smtpResult) PushPayload {
	if via != "" {
		p.Via = via
	}
	if res == nil { // no exchanger answered: the error says why
		p.Outcome, p.MX, p.TLS = nil, "", ""
		return p
	}
	p.MX, p.TLS = res.host, res.tls
	p.Outcome = map[string]RecipientOutcome{}
	for _, r := range res.delivered {
		p.Outcome[r] = RecipientOutcome{State: DeliveryDelivered}
	}
	for r, a := range res.refused {
		p.Outcome[r] = RecipientOutcome{State: DeliveryFailed, Reply: a}
	}
	for r, a := range res.deferred {
		p.Outcome[r] = RecipientOutcome{State: DeliveryDeferred, Reply: a}
	}
	return p
}

// push makes one attempt at delivering p: discovery, a fresh assertion, the
// POST.
func (m *MTA) push(ctx context.Context, p PushPayload) error {
	msg, err := placeholder.Parse(p.Placeholder, placeholder.Limits{})
	if err != nil {
		return final(fmt.Errorf("the queued copy does not parse: %w", err))
	}
	mb, err := m.cfg.Discovery.Mailbox(ctx, p.Domain)
	if err != nil {
		return discoveryError(p.Domain, err)
	}
	var assertion string
	var body []byte
	if p.Hop != nil {
		assertion, body, err = m.forwardAttempt(ctx, p)
	} else {
		assertion, body, err = m.firstHopAttempt(ctx, p, msg)
	}
	if err != nil {
		return err
	}
	resp, data, err := m.post(ctx, mb.InboundEndpoint, assertion, func(proof string) (*federation.Answer, error) {
		return m.tr.Push(ctx, federation.PushRequest{Endpoint: mb.InboundEndpoint, Assertion: assertion, DPoP: proof, Body: body})
	})
	if err != nil {
		return err
	}
	switch {
	case resp.Status == http.StatusOK:
		resp.Body.Close()
		return nil
	case resp.Status == http.StatusAccepted:
		return nil
	case resp.Status >= 400 && resp.Status < 500 && !retryable(resp.Status):
		return refused(answerError(p.Domain+" refused the message", resp.Status, data))
	}
	return temporary(answerError(p.Domain+" did not take the message", resp.Status, data))
}

// firstHopAttempt obtains a fresh assertion for the author's hop and
// builds the push body (docs/PROTOCOL.md §11.2).
func (m *MTA) firstHopAttempt(ctx context.Context, p PushPayload, msg *placeholder.Message) (string, []byte, error) {
	// The first hop signs the required names and, when present, the
	// headers a reader trusts: nothing a forwarder could change unseen.
	ehl := append([]string(nil), EHL...)
	for _, n := range SignedExtras {
		if msg.Header.Has(n) {
			ehl = append(ehl, n)
		}
	}
	var eh placeholder.Header
	for _, n := range ehl {
		eh.Set(n, msg.Header.Get(n))
	}
	hb, err := json.Marshal(eh)
	if err != nil {
		return "", nil, final(fmt.Errorf("envelope headers: %w", err))
	}
	eb, _ := json.Marshal(ehl)
	assertion, err := m.exchange(ctx, m.tokenURL, url.Values{
		"subject_token": {p.Grant}, "subject_token_type": {federation.TokenTypeAccess},
		"requested_token_type": {federation.TokenTypeJWT}, "audience": {p.Domain}, "scope": {federation.ScopeInternetMail},
		"envelope_headers": {string(hb)}, "ehl": {string(eb)}})
	if err != nil {
		return "", nil, fmt.Errorf("obtaining the assertion: %w", err)
	}
	body, err := federation.Envelope{Placeholder: p.Placeholder,
		Chain: []federation.ChainElement{{Headers: hb, Assertion: assertion}}}.Encode()
	if err != nil {
		return "", nil, final(fmt.Errorf("encoding the push: %w", err))
	}
	return assertion, body, nil
}

// discoveryError classifies a discovery failure: a domain that does not take
// part (no SRV record, or a "." target) is final; anything else may heal.
func discoveryError(domain string, err error) error {
	err = fmt.Errorf("discovering %s: %w", domain, err)
	if errs.Is(err, errs.NotFound) {
		return &failure{err: err, final: true, reason: ReasonNoDomain}
	}
	return temporary(err)
}

// addressList joins recipients for the notice's text.
func addressList(rs []string) string {
	if len(rs) == 0 {
		return "(the recipients)"
	}
	return strings.Join(rs, ", ")
}
