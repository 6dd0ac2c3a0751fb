package mailbox

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strings"
	"unicode"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// Forwarding limits (docs/PROTOCOL.md §8.16).
const (
	MaxForwardRecipients = 100
	MaxForwardNote       = 1000 // characters
)

// ForwardRequest asks to pass a message on.
type ForwardRequest struct {
	To   []string `json:"to"`
	Note string   `json:"note,omitempty"`
}

// Forwarded is the answer to a forward.
type Forwarded struct {
	// ForwardID names the forward: the Forwarded-Message-ID of the hop
	// (mode "chain"), or the Message-ID of the new message (mode
	// "message").
	ForwardID string `json:"forward_id"`
	// Mode is "chain" when a message received from another domain goes on
	// with its chain of signed envelopes, the final domain pulling from
	// the origin (§12); "message" when a message of this domain goes as a
	// new message of the forwarder's that references the same resources.
	Mode string `json:"mode"`
	// Message is the record of the forward in the sent folder.
	Message Message `json:"message"`
}

// ForwardCopy is one domain's part of a chain forward, for Outbound.
type ForwardCopy struct {
	Domain      string
	Placeholder json.RawMessage           // as received
	Chain       []federation.ChainElement // as received
	Recipients  []string                  // at Domain
}

// Forwarder queues the pushes of a chain forward inside the transaction
// that records it (package mta).
type Forwarder interface {
	QueueForward(ctx context.Context, tx meta.Tx, forwarder string, record meta.Message, hop ForwardHop, copies []ForwardCopy) error
}

// ForwardHop is what Outbound needs to build the hop's header block; the
// mailbox fills it, the MTA signs it.
type ForwardHop struct {
	Prev      string // the newest assertion the copy arrived with
	MessageID string
	Forwarder string
	To        []string
	ForwardID string
	Note      string
	Received  string
	Auto      bool // made by the user's rule (autoforward.go)
}

// SettingForwarding is the user's forwarding policy (authz reads the same
// setting when it issues a chained assertion): "deny" forbids forwards.
const SettingForwarding = federation.SettingForwarding

// Forward implements API: a received message goes on with its chain; a
// message of this domain goes as a new message.
func (s *Service) Forward(ctx context.Context, id string, req ForwardRequest) (Forwarded, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return Forwarded{}, err
	}
	to, err := checkForwardRequest(req)
	if err != nil {
		return Forwarded{}, err
	}
	if denied, err := federation.ForwardingDenied(ctx, s.cfg.Meta, p.UserID); err != nil {
		return Forwarded{}, internal(err, "reading the forwarding policy failed")
	} else if denied {
		return Forwarded{}, errs.E(errs.Forbidden, "forwarding_denied", "your forwarding policy forbids forwards")
	}
	row, err := s.cfg.Meta.Message(ctx, p.UserID, id)
	if err != nil {
		return Forwarded{}, storeErr(err, "reading the message failed")
	}
	if row.Folder == meta.Drafts {
		return Forwarded{}, errs.E(errs.Conflict, "not_sent", "a draft cannot be forwarded: send it")
	}
	env, err := s.cfg.Meta.Envelope(ctx, p.UserID, id)
	switch {
	case errors.Is(err, meta.ErrNotFound):
		return s.forwardAsMessage(ctx, row, to, req.Note)
	case err != nil:
		return Forwarded{}, internal(err, "reading the envelope failed")
	}
	return s.forwardChain(ctx, p, row, env, to, req.Note)
}

// checkForwardRequest parses the recipients and checks the note.
func checkForwardRequest(req ForwardRequest) ([]*mail.Address, error) {
	if len(req.To) == 0 || len(req.To) > MaxForwardRecipients {
		return nil, errs.E(errs.Invalid, "no_recipients", "a forward names 1 to %d recipients", MaxForwardRecipients)
	}
	var out []*mail.Address
	for _, s := range req.To {
		a, err := mail.ParseAddress(s)
		if err != nil {
			return nil, errs.E(errs.Invalid, "bad_address", "%q is not a valid address", s)
		}
		if _, err := account.NormalizeAddress(a.Address); err != nil {
			return nil, errs.E(errs.Invalid, "bad_address", "%q is not a valid address", s)
		}
		out = append(out, a)
	}
	if len([]rune(req.Note)) > MaxForwardNote || strings.IndexFunc(req.Note, unicode.IsControl) >= 0 {
		return nil, errs.E(errs.Invalid, "bad_note", "a note is one line of at most %d characters", MaxForwardNote)
	}
	return out, nil
}

// forwardChain passes a received copy on with its chain (§12.2): remote
// recipients get it by a push job per domain, local ones a copy by
// reference, and the forward is recorded in sent, all in one commit.
func (s *Service) forwardChain(ctx context.Context, p auth.Principal, row meta.Message, raw []byte, to []*mail.Address, note string) (Forwarded, error) {
	var env federation.Envelope
	if err := json.Unmarshal(raw, &env); err != nil || len(env.Chain) == 0 {
		return Forwarded{}, internal(fmt.Errorf("envelope of %s: %v", row.ID, err), "the stored envelope is unreadable")
	}
	fwd, ok := s.cfg.Outbound.(Forwarder)
	if s.cfg.Outbound == nil || !ok {
		return Forwarded{}, errs.E(errs.Invalid, "remote_delivery_unavailable", "this server does not deliver to other domains")
	}
	plan, err := s.planChain(ctx, s.cfg.Meta, p, row, env, to, note, false)
	if err != nil {
		return Forwarded{}, storeErr(err, "resolving the recipients failed")
	}
	if len(plan.local) > 0 && row.Status != meta.StatusComplete {
		return Forwarded{}, errs.E(errs.Conflict, "not_ready", "the message is still %s: forward it to this domain's users when it is complete", row.Status)
	}
	err = s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		_, err := plan.commit(ctx, tx, fwd, p.Address, meta.StatusComplete)
		return err
	})
	if err != nil {
		return Forwarded{}, storeErr(err, "forwarding failed")
	}
	s.log.Info("forwarded", "user", p.Address, "msgid", row.MessageID, "forward_id", plan.hop.ForwardID,
		"domains", len(plan.copies), "local_recipients", len(plan.local))
	return Forwarded{ForwardID: plan.hop.ForwardID, Mode: "chain", Message: s.view(plan.record, false)}, nil
}

// chainPlan is what a chain forward writes: its record in the forwarder's
// sent folder, its hop, the copies for other domains (one push job each)
// and this domain's users who get a copy by reference.
type chainPlan struct {
	record meta.Message
	hop    ForwardHop
	copies []ForwardCopy
	local  []int64
}

// planChain resolves a chain forward's recipients and builds what it
// writes; auto marks a forward made by the user's rule.
func (s *Service) planChain(ctx context.Context, r meta.Reader, p auth.Principal, row meta.Message, env federation.Envelope, to []*mail.Address, note string, auto bool) (chainPlan, error) {
	stored, err := placeholder.Parse(row.Placeholder, placeholder.Limits{})
	if err != nil {
		return chainPlan{}, internal(err, "the stored message is unreadable")
	}
	var plan chainPlan
	var toList []string
	local := map[int64]bool{}
	byDomain := map[string][]string{}
	var domains []string
	for _, a := range to {
		toList = append(toList, formatAddress(a))
		norm, _ := account.NormalizeAddress(a.Address)
		_, dom, _ := strings.Cut(norm, "@")
		if dom != s.cfg.Domain {
			if _, seen := byDomain[dom]; !seen {
				domains = append(domains, dom)
			}
			byDomain[dom] = append(byDomain[dom], a.Address)
			continue
		}
		u, err := r.UserByAddress(ctx, norm)
		if errors.Is(err, meta.ErrNotFound) {
			return chainPlan{}, errs.E(errs.Invalid, "unknown_recipient", "no such user: %s", norm)
		} else if err != nil {
			return chainPlan{}, err
		}
		if !local[u.ID] {
			local[u.ID] = true
			plan.local = append(plan.local, u.ID)
		}
	}
	received := ""
	if r := stored.Header.Get(placeholder.HReceived); !r.IsZero() {
		received = r.List()[0]
	}
	plan.hop = ForwardHop{Prev: env.Chain[0].Assertion, MessageID: row.MessageID, Forwarder: p.Address, To: toList,
		ForwardID: placeholder.NewMessageID(s.cfg.Domain), Note: note, Received: received, Auto: auto}

	// The record and the local copies: the message as it arrived, with
	// the forward's trace at the top instead of this domain's own.
	now := s.now()
	doc := stored.Clone()
	doc.Header.Del(placeholder.HDestinationMailboxURL)
	doc.Header.SetString(placeholder.HForwardedFrom, p.Address)
	doc.Header.Set(placeholder.HForwardedTo, placeholder.List(toList...))
	doc.Header.SetString(placeholder.HForwardedMessageID, plan.hop.ForwardID)
	if note != "" {
		doc.Header.SetString(placeholder.HForwardedNote, note)
	} else {
		doc.Header.Del(placeholder.HForwardedNote)
	}
	canon := doc.Canonical()
	plan.record = meta.Message{ID: newID(), UserID: p.UserID, Folder: meta.Sent, MessageID: row.MessageID,
		ThreadID: row.ThreadID, Status: meta.StatusSent, Seen: true, From: row.From, Subject: row.Subject,
		Date: now, Created: now, Updated: now, Placeholder: canon, Refs: row.Refs}
	for _, dom := range domains {
		plan.copies = append(plan.copies, ForwardCopy{Domain: dom, Placeholder: env.Placeholder, Chain: env.Chain,
			Recipients: byDomain[dom]})
	}
	return plan, nil
}

// commit writes the plan in tx: the record, the local copies with status,
// and the push jobs. It returns the local copies made.
func (plan chainPlan) commit(ctx context.Context, tx meta.Tx, fwd Forwarder, forwarder string, status meta.Status) ([]meta.Message, error) {
	if err := tx.InsertMessage(ctx, plan.record); err != nil {
		return nil, err
	}
	var made []meta.Message
	for _, uid := range plan.local {
		in := plan.record
		in.ID, in.UserID, in.Folder, in.Status, in.Seen = newID(), uid, meta.Inbox, status, false
		if err := tx.InsertMessage(ctx, in); err != nil {
			return nil, err
		}
		made = append(made, in)
	}
	if len(plan.copies) == 0 {
		return made, nil
	}
	return made, fwd.QueueForward(ctx, tx, forwarder, plan.record, plan.hop, plan.copies)
}

// forwardAsMessage sends a message of this domain on as a new message of
// the forwarder's (planForward), in one transaction with the rules of its
// recipients. The note's text is stored before it.
func (s *Service) forwardAsMessage(ctx context.Context, row meta.Message, to []*mail.Address, note string) (Forwarded, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return Forwarded{}, err
	}
	if err := forwardable(row); err != nil {
		return Forwarded{}, err
	}
	var text *placeholder.Part
	if note != "" {
		up, err := s.Upload(ctx, strings.NewReader(note), UploadOptions{Size: int64(len(note))})
		if err != nil {
			return Forwarded{}, err
		}
		leaf, err := placeholder.NewLeaf(up.ContentID, up.Size, "text/plain; charset=UTF-8", "inline", "")
		if err != nil {
			return Forwarded{}, internal(err, "building the note failed")
		}
		text = &leaf
	}
	pre := s.prepare()
	msgid := pre.messageID("forward")
	if m, err := forwardDoc(row, to, text, false); err == nil {
		pre.expect(m.Canonical(), p.Address, msgid, true)
	}
	var sent meta.Message
	var delivered []meta.Message
	var rules autoLog
	err = s.update(ctx, pre, func(tx meta.Tx) error {
		rules = autoLog{}
		plan, err := s.planForward(ctx, tx, pre, p, row, to, text, msgid, false)
		if err != nil {
			return err
		}
		if delivered, err = plan.write(ctx, tx, s.cfg.Outbound, true); err != nil {
			return err
		}
		sent = plan.sent
		_, err = s.applyRules(ctx, tx, pre, &rules, delivered, nil)
		return err
	})
	if err != nil {
		return Forwarded{}, storeErr(err, "forwarding failed")
	}
	s.cfg.Metrics.sent(len(delivered))
	s.log.Info("sent", "user", p.Address, "msgid", msgid, "local_recipients", len(delivered), "forward_of", row.MessageID)
	rules.flush(s)
	return Forwarded{ForwardID: msgid, Mode: "message", Message: s.view(sent, true)}, nil
}

// forwardable refuses to forward a copy whose resources are not all here.
func forwardable(row meta.Message) error {
	if row.Status != meta.StatusComplete && row.Status != meta.StatusSent {
		return errs.E(errs.Conflict, "not_ready", "the message is still %s", row.Status)
	}
	return nil
}

// planForward plans the send of row, a message of this domain, on as a
// new message of p's, messageID: "Fwd:" subject, the note's text part
// first (when there is one), then the original's parts by reference (the
// forwarder holds them), in the original's thread. auto marks a forward
// made by the user's rule: Auto-Submitted: auto-forwarded (RFC 3834 §5),
// which no rule forwards again. It is checked as a draft would be and
// planned as Send plans one; the plan's write inserts its sent row.
func (s *Service) planForward(ctx context.Context, tx meta.Reader, pre *prepared, p auth.Principal, row meta.Message, to []*mail.Address, text *placeholder.Part, messageID string, auto bool) (sendPlan, error) {
	if err := forwardable(row); err != nil {
		return sendPlan{}, err
	}
	m, err := forwardDoc(row, to, text, auto)
	if err != nil {
		return sendPlan{}, internal(err, "the stored message is unreadable")
	}
	d, err := s.parseDraft(p, m.Canonical(), "")
	if err != nil {
		return sendPlan{}, err
	}
	d.setMessageID(messageID)
	now := s.now()
	draft := meta.Message{ID: newID(), UserID: p.UserID, Folder: meta.Drafts, MessageID: messageID,
		Status: meta.StatusDraft, From: d.from, Subject: d.subject, Created: now, Updated: now}
	return s.planSend(ctx, tx, pre, p, draft, d)
}

// forwardDoc builds the new message of a forward as a message.
func forwardDoc(row meta.Message, to []*mail.Address, text *placeholder.Part, auto bool) (*placeholder.Message, error) {
	orig, err := placeholder.Parse(row.Placeholder, placeholder.Limits{})
	if err != nil {
		return nil, err
	}
	var toList []string
	for _, a := range to {
		toList = append(toList, formatAddress(a))
	}
	subject := row.Subject
	if !strings.HasPrefix(strings.ToLower(subject), "fwd:") {
		subject = strings.TrimSpace("Fwd: " + subject)
	}
	m := placeholder.New("", toList, nil, nil, subject)
	m.Header.Del(placeholder.HFrom)
	refs := append(orig.Header.Get(placeholder.HReferences).List(), row.MessageID)
	m.Header.SetString(placeholder.HReferences, strings.Join(lastN(refs, maxReferences), " "))
	if auto {
		m.Header.SetString(federation.HAutoSubmitted, federation.AutoForwarded)
	}
	if text != nil {
		m.Parts = append(m.Parts, *text)
	}
	m.Parts = append(m.Parts, orig.Parts...)
	return m, nil
}

// maxReferences bounds References (RFC 5322 §3.6.4 lets it grow without
// limit; the newest ids matter most).
const maxReferences = 20

func lastN(ss []string, n int) []string {
	if len(ss) > n {
		return ss[len(ss)-n:]
	}
	return ss
}

func (h *handler) forward(w http.ResponseWriter, r *http.Request) {
	doc, err := readDoc(w, r)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	var req ForwardRequest
	if err := decodeBody(doc, &req, `the body must be {"to": [ADDRESS, ...], "note"?: TEXT}`); err != nil {
		errs.WriteHTTP(w, err) // duplicate_key, unknown_member or malformed_json (§8.3)
		return
	}
	f, err := h.api.Forward(r.Context(), r.PathValue("id"), req)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (h *handler) stat(w http.ResponseWriter, r *http.Request) {
	id, err := resource.ParseID(r.PathValue("cid"))
	if err != nil {
		errs.WriteHTTP(w, errs.E(errs.NotFound, "not_found", "no such resource"))
		return
	}
	up, err := h.api.Stat(r.Context(), id)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, up)
}

// Stat implements API: whether the user holds a resource, so that a
// client can reference it in a new message instead of uploading it again.
func (s *Service) Stat(ctx context.Context, cid resource.ID) (Upload, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return Upload{}, err
	}
	notFound := errs.E(errs.NotFound, "not_found", "you hold no resource <%s>", cid)
	ok, err := s.cfg.Meta.Holds(ctx, p.UserID, cid)
	if err != nil {
		return Upload{}, internal(err, "checking the resource failed")
	}
	if !ok {
		return Upload{}, notFound
	}
	info, err := s.cfg.Resources.Stat(ctx, cid)
	if errors.Is(err, resource.ErrNotFound) {
		return Upload{}, notFound // referenced, not yet pulled
	} else if err != nil {
		return Upload{}, internal(err, "checking the resource failed")
	}
	return Upload{ContentID: cid, Size: info.Size}, nil
}

// threadOf decides a message's X-Thread-ID at send (docs/PROTOCOL.md
// §6.2): the thread of the message it replies to (the first id of
// In-Reply-To, else the last of References) when the user has it. A reply
// without References gets the parent's References and the parent's
// Message-ID (RFC 5322 §3.6.4), so that every domain's clients can thread
// it, whatever wrote the draft.
func (s *Service) threadOf(ctx context.Context, tx meta.Reader, userID int64, d *draft) (string, error) {
	parentID := d.inReplyTo()
	if parentID == "" {
		if refs := d.m.Header.Get(placeholder.HReferences).List(); len(refs) > 0 {
			if f := strings.Fields(refs[len(refs)-1]); len(f) > 0 {
				parentID = f[len(f)-1]
			}
		}
	}
	if parentID == "" {
		return "", nil
	}
	prev, err := tx.MessagesByMessageID(ctx, userID, parentID)
	if err != nil || len(prev) == 0 {
		return "", err
	}
	parent := prev[0]
	if d.inReplyTo() != "" && !d.m.Header.Has(placeholder.HReferences) {
		refs := []string{parentID}
		if pm, err := placeholder.Parse(parent.Placeholder, placeholder.Limits{}); err == nil {
			refs = append(strings.Fields(strings.Join(pm.Header.Get(placeholder.HReferences).List(), " ")), parentID)
		}
		d.m.Header.SetString(placeholder.HReferences, strings.Join(lastN(refs, maxReferences), " "))
	}
	return parent.ThreadID, nil
}

// ForwardInfo is the forward a message came by (its newest hop), or the
// forward a sent record records.
type ForwardInfo struct {
	From string   `json:"from"`
	To   []string `json:"to"`
	ID   string   `json:"forward_id,omitempty"`
	Note string   `json:"note,omitempty"`
}

// ChainHop shows one hop of the chain a copy arrived with. The values come
// from assertions verified when the copy was received (§12.3); they are
// shown, not verified again.
type ChainHop struct {
	Hop             int             `json:"hop"`
	Domain          string          `json:"domain"`   // the domain that sent the hop
	Audience        string          `json:"audience"` // the domain it was sent to
	Issuer          string          `json:"issuer"`
	Subject         string          `json:"sub"` // the author (hop 1) or the forwarder
	ForwardedTo     []string        `json:"forwarded_to,omitempty"`
	ForwardID       string          `json:"forward_id,omitempty"`
	Note            string          `json:"note,omitempty"`
	AssertionDigest string          `json:"assertion_digest"` // §5.4, what the next hop names
	Headers         json.RawMessage `json:"headers"`
	EHL             []string        `json:"ehl"`
}

// chainView decodes a stored envelope for display, oldest hop first; an
// unreadable one shows nothing.
func chainView(raw []byte) []ChainHop {
	var env federation.Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil
	}
	out := make([]ChainHop, 0, len(env.Chain))
	for i := len(env.Chain) - 1; i >= 0; i-- {
		el := env.Chain[i]
		var c federation.Claims
		if parts := strings.Split(el.Assertion, "."); len(parts) == 3 {
			if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
				json.Unmarshal(b, &c)
			}
		}
		h, _ := placeholder.ParseHeader(el.Headers, placeholder.Limits{})
		hop := ChainHop{Hop: c.Hop, Issuer: c.Issuer, Subject: c.Subject, Headers: el.Headers,
			AssertionDigest: placeholder.JWTAssertionDigest(el.Assertion),
			ForwardedTo:     federation.Addresses(h.Get(placeholder.HForwardedTo)),
			ForwardID:       h.Get(placeholder.HForwardedMessageID).String(), Note: h.Get(placeholder.HForwardedNote).String()}
		if _, d, ok := strings.Cut(c.Subject, "@"); ok {
			hop.Domain = d
		}
		if len(c.Audience) == 1 {
			hop.Audience = c.Audience[0]
		}
		if c.EH != nil {
			hop.EHL = c.EH.EHL
		}
		out = append(out, hop)
	}
	return out
}
