package mta

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
)

// ForwardEHL is the order in which a forwarding hop signs its header block
// (docs/PROTOCOL.md §12.1): the names §5.3 requires, then the others the
// block holds.
var ForwardEHL = []string{placeholder.HMessageID, placeholder.HForwardedFrom, placeholder.HRecipientsDigest,
	placeholder.HJWTAssertionDigest, placeholder.HForwardedTo, placeholder.HForwardedMessageID,
	placeholder.HForwardedNote, placeholder.HReceived, federation.HAutoSubmitted}

// Hop describes a forwarding hop to build.
type Hop struct {
	// Prev is the newest assertion of the chain the copy arrived with.
	Prev      string
	MessageID string   // the message's Message-ID
	Forwarder string   // Forwarded-From: the forwarding user, as they write it
	To        []string // Forwarded-To: every recipient of the forward
	ForwardID string   // Forwarded-Message-ID: names this forward
	Note      string   // Forwarded-Note, optional
	// Received is the Received line this domain added when the copy
	// arrived (§5.3: it travels in the hop's block).
	Received string
	// Auto marks a forward made by the user's rule, not by the user: the
	// block carries Auto-Submitted: auto-forwarded (§12.6), which the AS
	// checks against the automatic forwarding policy.
	Auto bool
}

// Header builds the hop's signed header block: every name of ForwardEHL
// it has, Recipients-Digest over Forwarded-To (§5.2) and
// JWT-Assertion-Digest of Prev (§5.4).
func (h Hop) Header() (placeholder.Header, error) {
	var hdr placeholder.Header
	hdr.SetString(placeholder.HMessageID, h.MessageID)
	hdr.SetString(placeholder.HForwardedFrom, h.Forwarder)
	hdr.Set(placeholder.HForwardedTo, placeholder.List(h.To...))
	if len(h.To) == 1 {
		hdr.SetString(placeholder.HForwardedTo, h.To[0])
	}
	rd, err := placeholder.ForwardRecipientsDigest(hdr)
	if err != nil {
		return hdr, err
	}
	hdr.SetString(placeholder.HRecipientsDigest, rd)
	hdr.SetString(placeholder.HJWTAssertionDigest, placeholder.JWTAssertionDigest(h.Prev))
	hdr.SetString(placeholder.HForwardedMessageID, h.ForwardID)
	if h.Note != "" {
		hdr.SetString(placeholder.HForwardedNote, h.Note)
	}
	if h.Received != "" {
		hdr.SetString(placeholder.HReceived, h.Received)
	}
	if h.Auto {
		hdr.SetString(federation.HAutoSubmitted, federation.AutoForwarded)
	}
	return hdr, nil
}

// hopEHL lists the names of ForwardEHL that h holds, in that order.
func hopEHL(h placeholder.Header) []string {
	var ehl []string
	for _, n := range ForwardEHL {
		if h.Has(n) {
			ehl = append(ehl, n)
		}
	}
	return ehl
}

// Forward is one domain's part of a forward of a received copy.
type Forward struct {
	Domain string
	// Placeholder and Chain are the envelope the copy arrived with.
	Placeholder json.RawMessage
	Chain       []federation.ChainElement
	// Hop is the new hop's header block (Hop.Header), the same for every
	// domain of one forward.
	Hop        placeholder.Header
	Recipients []string // the forward's recipients at Domain
}

// QueueForward adds one push job per domain of a forward, in tx: the
// mailbox calls it inside the transaction that records the forward. Each
// attempt trades the copy's newest assertion for a fresh chained one
// (§10.7); this domain does not pull the resources, the final domain does,
// from the origin (§12).
func (m *MTA) QueueForward(ctx context.Context, tx meta.Tx, forwarder string, record meta.Message, fs []Forward) error {
	now := m.cfg.Clock()
	for _, f := range fs {
		if len(f.Chain) == 0 {
			return errors.New("mta: a forward needs the chain the copy arrived with")
		}
		dom := strings.ToLower(f.Domain)
		hb, err := json.Marshal(f.Hop)
		if err != nil {
			return fmt.Errorf("mta: forward hop: %w", err)
		}
		p := PushPayload{Author: forwarder, UserID: record.UserID, MessageRow: record.ID, MessageID: record.MessageID,
			Domain: dom, Placeholder: f.Placeholder, Recipients: f.Recipients, Chain: f.Chain, Hop: hb}
		pb, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("mta: forward payload: %w", err)
		}
		sum := sha256.Sum256(hb)
		key := "forward:" + record.ID + ":" + dom + ":" + hex.EncodeToString(sum[:8])
		_, err = tx.AddJob(ctx, meta.Job{Kind: JobPush, Key: key, Payload: pb, NextTry: now, Created: now,
			Updated: now, Expires: now.Add(m.cfg.Horizon)})
		if err != nil && !errors.Is(err, meta.ErrExists) {
			return fmt.Errorf("mta: queueing the forward to %s: %w", dom, err)
		}
	}
	return nil
}

// forwardAttempt obtains a fresh chained assertion at this domain's AS and
// builds the push body: the placeholder as received, the new hop first in
// the chain.
func (m *MTA) forwardAttempt(ctx context.Context, p PushPayload) (string, []byte, error) {
	hop, err := placeholder.ParseHeader(p.Hop, placeholder.Limits{})
	if err != nil {
		return "", nil, final(fmt.Errorf("the queued hop does not parse: %w", err))
	}
	eb, _ := json.Marshal(hopEHL(hop))
	assertion, err := m.exchange(ctx, m.tokenURL, url.Values{
		"subject_token": {p.Chain[0].Assertion}, "subject_token_type": {federation.TokenTypeJWT},
		"requested_token_type": {federation.TokenTypeJWT}, "audience": {p.Domain},
		"envelope_headers": {string(p.Hop)}, "ehl": {string(eb)}})
	if err != nil {
		return "", nil, fmt.Errorf("obtaining the chained assertion: %w", err)
	}
	chain := append([]federation.ChainElement{{Headers: p.Hop, Assertion: assertion}}, p.Chain...)
	body, err := federation.Envelope{Placeholder: p.Placeholder, Chain: chain}.Encode()
	if err != nil {
		return "", nil, final(fmt.Errorf("encoding the forward: %w", err))
	}
	return assertion, body, nil
}
