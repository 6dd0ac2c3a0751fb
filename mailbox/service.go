// Package mailbox is a domain's mailbox service: the user-facing API over the
// metadata store (package meta) and the resource store (package resource).
// It owns the rules of docs/PROTOCOL.md §6 and §8: who may read what, draft
// versus sent, server-owned headers, and local delivery by reference.
//
// It is the one writer of mailbox rows: what the inbound receiver, the MTA
// and fsck decide is written by its transactional operations (deliver.go),
// automatic forwarding included (autoforward.go). Its write transactions do
// no file I/O and no signing: what they need from outside the metadata
// store is obtained before them (prepare.go).
//
// Access control: a user reads a resource only through a message of theirs
// that references it. A digest alone grants nothing, and "not yours" answers
// exactly like "does not exist".
package mailbox

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/upload"
)

// Config is what a Service needs.
type Config struct {
	Domain    string         // the domain this mailbox serves, e.g. "a.test"
	Meta      meta.Store     // metadata
	Resources resource.Store // resource bytes
	Log       *slog.Logger   // nil: discard
	Clock     func() time.Time
	// MaxUpload caps a resource's size in bytes; 0 means no cap
	// (attachments of any size, seed 002).
	MaxUpload int64
	// UploadTTL is how long an upload that no message references is kept
	// (default 7 days); garbage collection removes it after that.
	UploadTTL time.Duration
	Metrics   *Metrics // nil: no metrics
	// Outbound queues copies for other domains; nil refuses them with
	// remote_recipient.
	Outbound Outbound
	// Staging holds resumable uploads (§8.14); nil: not offered.
	Staging upload.Staging
	// Events wakes event streams on this process's commits; nil: the
	// streams only poll.
	Events *Hub
	// Deliveries tells the delivery state of sent messages' remote
	// recipients (the MTA's push jobs); nil: only local recipients show.
	Deliveries Deliveries
	// EventPoll is how often an event stream polls the store's cursor, to
	// see writers in other processes (default 3s); EventPing how often it
	// sends a keep-alive (default 25s).
	EventPoll, EventPing time.Duration
}

// Service implements API for the principal in each call's context.
type Service struct {
	cfg  Config
	log  *slog.Logger
	gcMu sync.Mutex // one CollectGarbage at a time
}

var _ API = (*Service)(nil)

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.UploadTTL <= 0 {
		cfg.UploadTTL = 7 * 24 * time.Hour
	}
	if cfg.EventPoll <= 0 {
		cfg.EventPoll = 3 * time.Second
	}
	if cfg.EventPing <= 0 {
		cfg.EventPing = 25 * time.Second
	}
	return &Service{cfg: cfg, log: cfg.Log} // the server's logger names the domain
}

// Domain returns the domain the service serves.
func (s *Service) Domain() string { return s.cfg.Domain }

func (s *Service) now() time.Time { return s.cfg.Clock().UTC() }

var errNoMessage = errs.E(errs.NotFound, "not_found", "no such message")
var errNoResource = errs.E(errs.NotFound, "not_found", "no such resource")

// internal wraps an unexpected error from a store with context.
func internal(err error, what string) error {
	return errs.Wrap(err, errs.Internal, "internal", what)
}

// Me implements API.
func (s *Service) Me(ctx context.Context) (Me, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return Me{}, err
	}
	features := []string{"events", "paging"}
	if s.cfg.Staging != nil {
		features = append(features, "uploads")
	}
	return Me{Address: p.Address, Domain: s.cfg.Domain, Features: features}, nil
}

// Upload implements API.
func (s *Service) Upload(ctx context.Context, r io.Reader, opt UploadOptions) (Upload, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return Upload{}, err
	}
	if opt.Size >= 0 && s.cfg.MaxUpload > 0 && opt.Size > s.cfg.MaxUpload {
		return Upload{}, errs.E(errs.TooLarge, "too_large", "the resource is larger than this server accepts (%d bytes)", s.cfg.MaxUpload)
	}
	// Garbage collection's epoch before the bytes are stored: the
	// transaction that records them checks that no collection ran since
	// (recordUpload).
	epoch, err := s.collectorEpoch(ctx)
	if err != nil {
		return Upload{}, err
	}
	info, err := s.cfg.Resources.Put(ctx, r, resource.PutOptions{Want: opt.Digest, Size: opt.Size, Limit: s.cfg.MaxUpload})
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.Is(err, resource.ErrMismatch):
			return Upload{}, errs.Wrap(err, errs.Invalid, "digest_mismatch", "the bytes do not match the declared Content-ID or size")
		case errors.Is(err, resource.ErrTooLarge), errors.As(err, &mbe):
			return Upload{}, errs.Wrap(err, errs.TooLarge, "too_large", "the resource is larger than this server accepts")
		case errors.Is(err, io.ErrUnexpectedEOF), ctx.Err() != nil:
			return Upload{}, errs.Wrap(err, errs.Invalid, "upload_incomplete", "the upload ended before all its bytes arrived")
		}
		return Upload{}, internal(err, "storing the resource failed")
	}
	if err := s.recordUpload(ctx, p.UserID, info, r, epoch); err != nil {
		return Upload{}, err
	}
	s.cfg.Metrics.upload(info.Size)
	s.log.Debug("upload", "user", p.Address, "content_id", info.ID, "size", info.Size)
	return Upload{ContentID: info.ID, Size: info.Size}, nil
}

// recordUpload records the upload of the resource info, stored from r
// after garbage collection's epoch was read. When a collection condemned
// the resource or ran at all meanwhile (meta.CheckStored), the bytes just
// stored may be gone: once the resource is released, the upload is
// recorded if they are still there, stored again from r if r can be read
// again (an io.Seeker: a staged upload, a note), and otherwise answered as
// temporary, for the client to upload again.
func (s *Service) recordUpload(ctx context.Context, userID int64, info resource.Info, r io.Reader, epoch int64) error {
	ref := meta.Ref{ID: info.ID, Size: info.Size}
	for range maxCondemned {
		err := s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
			if err := meta.CheckStored(ctx, tx, info.ID, epoch); err != nil {
				return err
			}
			return tx.AddUpload(ctx, userID, ref)
		})
		if !errors.Is(err, meta.ErrCondemned) && !errors.Is(err, meta.ErrCollectedSince) {
			if err != nil {
				return internal(err, "recording the upload failed")
			}
			return nil
		}
		if err := s.awaitRelease(ctx, info.ID); err != nil {
			return err
		}
		if epoch, err = s.collectorEpoch(ctx); err != nil {
			return err
		}
		switch _, err := s.cfg.Resources.Stat(ctx, info.ID); {
		case err == nil:
			continue
		case !errors.Is(err, resource.ErrNotFound):
			return internal(err, "checking the stored resource failed")
		}
		sk, ok := r.(io.Seeker)
		if !ok {
			return errs.E(errs.Temporary, "collecting", "the resource was garbage collected while it was uploaded; upload it again")
		}
		if _, err := sk.Seek(0, io.SeekStart); err != nil {
			return internal(err, "reading the upload again failed")
		}
		if _, err := s.cfg.Resources.Put(ctx, r, resource.PutOptions{Want: info.ID, Size: info.Size}); err != nil {
			return internal(err, "storing the resource again failed")
		}
	}
	return errCollecting
}

// collectorEpoch reads garbage collection's epoch (meta.CheckStored).
func (s *Service) collectorEpoch(ctx context.Context) (int64, error) {
	var e int64
	err := s.cfg.Meta.View(ctx, func(r meta.Reader) error {
		var err error
		e, err = r.CollectorEpoch(ctx)
		return err
	})
	if err != nil {
		return 0, internal(err, "reading the state of garbage collection failed")
	}
	return e, nil
}

// CreateDraft implements API.
func (s *Service) CreateDraft(ctx context.Context, doc json.RawMessage) (Message, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return Message{}, err
	}
	d, err := s.parseDraft(p, doc, "")
	if err != nil {
		return Message{}, err
	}
	msgid := placeholder.NewMessageID(s.cfg.Domain)
	d.setMessageID(msgid)
	now := s.now()
	row := meta.Message{
		ID: newID(), UserID: p.UserID, Folder: meta.Drafts, MessageID: msgid, Status: meta.StatusDraft,
		From: d.from, Subject: d.subject, Created: now, Updated: now,
	}
	row.Placeholder = d.canonical()
	pre := s.prepare()
	pre.expect(row.Placeholder, p.Address, msgid, false)
	err = s.update(ctx, pre, func(tx meta.Tx) error {
		refs, err := s.checkRefs(ctx, tx, pre, p.UserID, d)
		if err != nil {
			return err
		}
		row.Refs = refs
		return tx.InsertMessage(ctx, row)
	})
	if err != nil {
		return Message{}, storeErr(err, "saving the draft failed")
	}
	return s.view(row, true), nil
}

// UpdateDraft implements API.
func (s *Service) UpdateDraft(ctx context.Context, id string, doc json.RawMessage) (Message, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return Message{}, err
	}
	var row meta.Message
	pre := s.prepare()
	pre.expect(doc, p.Address, "", false)
	err = s.update(ctx, pre, func(tx meta.Tx) error {
		row, err = tx.Message(ctx, p.UserID, id)
		if err != nil {
			return err
		}
		if row.Folder != meta.Drafts {
			return errs.E(errs.Conflict, "not_a_draft", "the message has been sent and cannot change")
		}
		d, err := s.parseDraft(p, doc, row.MessageID)
		if err != nil {
			return err
		}
		d.setMessageID(row.MessageID)
		refs, err := s.checkRefs(ctx, tx, pre, p.UserID, d)
		if err != nil {
			return err
		}
		row.Refs, row.Placeholder = refs, d.canonical()
		row.From, row.Subject, row.Updated = d.from, d.subject, s.now()
		return tx.UpdateMessage(ctx, row)
	})
	if err != nil {
		return Message{}, storeErr(err, "saving the draft failed")
	}
	return s.view(row, true), nil
}

// SetSeen implements API.
func (s *Service) SetSeen(ctx context.Context, id string, seen bool) (Message, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return Message{}, err
	}
	var row meta.Message
	err = s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		row, err = tx.Message(ctx, p.UserID, id)
		if err != nil || row.Seen == seen {
			return err
		}
		row.Seen, row.Updated = seen, s.now()
		return tx.UpdateMessage(ctx, row)
	})
	if err != nil {
		return Message{}, storeErr(err, "updating the message failed")
	}
	return s.view(row, false), nil
}

// storeErr maps the metadata store's sentinel errors to API errors and keeps
// *errs.Error values returned from inside a transaction.
func storeErr(err error, what string) error {
	var e *errs.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return err
	case errors.Is(err, meta.ErrNotFound):
		return errNoMessage
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errs.Wrap(err, errs.Temporary, "cancelled", "the request was cancelled")
	}
	return internal(err, what)
}

// Send implements API. With an Idempotency-Key in ctx
// (WithIdempotencyKey) the answer is recorded with the send, in its
// transaction, and a repeat with the key answers it again without sending.
func (s *Service) Send(ctx context.Context, id string) (Message, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return Message{}, err
	}
	key, request := IdempotencyKeyFrom(ctx), "send:"+id
	var v Message
	var replayed bool
	var delivered []meta.Message
	var rules autoLog
	// The look before: the draft's resources and, for other domains, its
	// send grant (prepare.go).
	pre := s.prepare()
	if row, err := s.cfg.Meta.Message(ctx, p.UserID, id); err == nil && row.Folder == meta.Drafts {
		pre.expect(row.Placeholder, p.Address, row.MessageID, true)
	}
	err = s.update(ctx, pre, func(tx meta.Tx) error {
		replayed, delivered, rules = false, nil, autoLog{}
		if key != "" {
			if replayed, err = s.replay(ctx, tx, p, key, request, &v); err != nil || replayed {
				return err
			}
		}
		var sent meta.Message
		if sent, delivered, err = s.send(ctx, tx, pre, p, id); err != nil {
			return err
		}
		// The recipients' rules, in the send's transaction (autoforward.go).
		if _, err := s.applyRules(ctx, tx, pre, &rules, delivered, nil); err != nil {
			return err
		}
		v = s.view(sent, true)
		if key == "" {
			return nil
		}
		return s.remember(ctx, tx, p, key, request, v)
	})
	if err != nil {
		return Message{}, storeErr(err, "sending failed")
	}
	if replayed {
		s.log.Info("send repeated: answered from its Idempotency-Key", "user", p.Address, "msgid", v.MessageID)
		return v, nil
	}
	s.cfg.Metrics.sent(len(delivered))
	s.log.Info("sent", "user", p.Address, "msgid", v.MessageID, "local_recipients", len(delivered))
	rules.flush(s)
	// The sent copy and the local recipients' are searchable when the send
	// answers (the indexer would find them soon after, too).
	if _, err := s.IndexPending(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("search indexing after a send failed", "msgid", v.MessageID, "err", err)
	}
	return v, nil
}

// send does the work of Send inside one transaction, so that a failure at
// any step leaves the draft a draft and delivers nothing.
func (s *Service) send(ctx context.Context, tx meta.Tx, pre *prepared, p auth.Principal, id string) (meta.Message, []meta.Message, error) {
	row, err := tx.Message(ctx, p.UserID, id)
	if err != nil {
		return row, nil, err
	}
	if row.Folder != meta.Drafts {
		return row, nil, errs.E(errs.Conflict, "not_a_draft", "the message has already been sent")
	}
	d, err := parseStored(row.Placeholder)
	if err != nil {
		return row, nil, internal(err, "stored draft is unreadable")
	}
	plan, err := s.planSend(ctx, tx, pre, p, row, d)
	if err != nil {
		return row, nil, err
	}
	delivered, err := plan.write(ctx, tx, s.cfg.Outbound, false)
	return plan.sent, delivered, err
}

// sendPlan is what a send writes, decided before it writes anything: the
// sent row, this domain's inbox copies and the copies for other domains
// with the message's send grant.
type sendPlan struct {
	author string
	sent   meta.Message
	local  []meta.Message
	remote []RemoteCopy
	grant  string
}

// planSend checks d, the draft in row, and decides its send: every
// recipient resolved, every resource checked, the message sealed, each copy
// built. It writes nothing, so that a refusal (unknown_recipient,
// unknown_resource, ...) leaves tx as it found it: a rule's forward that
// cannot go does not undo the delivery that triggered it. When pre lacks
// something it goes on, to find everything else it lacks in the same run,
// and fails with errUnprepared.
func (s *Service) planSend(ctx context.Context, tx meta.Reader, pre *prepared, p auth.Principal, row meta.Message, d *draft) (_ sendPlan, err error) {
	unprepared := false
	defer func() {
		if unprepared && err != nil {
			err = errUnprepared // the answer with everything prepared may differ
		}
	}()
	to, cc, bcc, err := d.recipients()
	if err != nil {
		return sendPlan{}, err
	}
	if len(to)+len(cc)+len(bcc) == 0 {
		return sendPlan{}, errs.E(errs.Invalid, "no_recipients", "the message has no recipients")
	}
	// Resolve every recipient before writing anything.
	visible := map[int64]bool{} // users who get the To/Cc copy
	var order []int64
	bccOf := map[int64]string{}       // users who get a Bcc copy, with their address as written
	remoteTo := map[string][]string{} // domain → its To/Cc recipients
	var domains []string              // in order of first mention
	var remoteBcc []*mail.Address
	// resolve returns a local recipient's user id, or 0 for a recipient
	// of another domain.
	resolve := func(addr string) (int64, error) {
		norm, err := account.NormalizeAddress(addr)
		if err != nil {
			return 0, errs.E(errs.Invalid, "bad_address", "%q is not a valid address", addr)
		}
		_, domain, _ := strings.Cut(norm, "@")
		if domain != s.cfg.Domain {
			if s.cfg.Outbound == nil {
				return 0, errs.E(errs.Invalid, "remote_recipient", "delivery to other domains (%s) is not available on this server", domain)
			}
			return 0, nil
		}
		u, err := tx.UserByAddress(ctx, norm)
		if errors.Is(err, meta.ErrNotFound) {
			return 0, errs.E(errs.Invalid, "unknown_recipient", "no such user: %s", norm)
		} else if err != nil {
			return 0, err
		}
		return u.ID, nil
	}
	for _, a := range append(append([]*mail.Address{}, to...), cc...) {
		uid, err := resolve(a.Address)
		if err != nil {
			return sendPlan{}, err
		}
		if uid == 0 {
			_, domain, _ := strings.Cut(strings.ToLower(a.Address), "@")
			if _, seen := remoteTo[domain]; !seen {
				domains = append(domains, domain)
			}
			remoteTo[domain] = append(remoteTo[domain], a.Address)
			continue
		}
		if !visible[uid] {
			visible[uid] = true
			order = append(order, uid)
		}
	}
	for _, a := range bcc {
		uid, err := resolve(a.Address)
		if err != nil {
			return sendPlan{}, err
		}
		if uid == 0 {
			remoteBcc = append(remoteBcc, a)
			continue
		}
		if _, dup := bccOf[uid]; !visible[uid] && !dup {
			bccOf[uid] = formatAddress(a)
			order = append(order, uid)
		}
	}
	refs, err := s.checkRefs(ctx, tx, pre, p.UserID, d)
	if errors.Is(err, errUnprepared) {
		unprepared = true
	} else if err != nil {
		return sendPlan{}, err
	}

	now := s.now()
	thread, err := s.threadOf(ctx, tx, p.UserID, d)
	if err != nil {
		return sendPlan{}, err
	}
	if thread == "" {
		thread = placeholder.NewMessageID(s.cfg.Domain)
	}
	if err := d.seal(now, thread); err != nil {
		return sendPlan{}, internal(err, "sealing the message failed")
	}
	sentDoc, err := d.copyFor(nil, true)
	if err != nil {
		return sendPlan{}, internal(err, "building the sent copy failed")
	}
	row.Folder, row.Status, row.Date, row.ThreadID = meta.Sent, meta.StatusSent, now, thread
	row.Placeholder, row.Refs, row.Updated, row.Seen = sentDoc, refs, now, true
	plan := sendPlan{author: p.Address, sent: row}
	var visibleDoc []byte
	for _, uid := range order {
		var doc []byte
		if visible[uid] {
			if visibleDoc == nil {
				if visibleDoc, err = d.copyFor(nil, false); err != nil {
					return sendPlan{}, internal(err, "building a copy failed")
				}
			}
			doc = visibleDoc
		} else if doc, err = d.copyFor([]string{bccOf[uid]}, false); err != nil {
			return sendPlan{}, internal(err, "building a Bcc copy failed")
		}
		in := meta.Message{
			ID: newID(), UserID: uid, Folder: meta.Inbox, MessageID: row.MessageID, ThreadID: thread,
			Status: meta.StatusComplete, From: row.From, Subject: row.Subject, Date: now,
			Created: now, Updated: now, Placeholder: doc, Refs: refs,
		}
		plan.local = append(plan.local, in)
	}
	if len(domains)+len(remoteBcc) > 0 {
		var copies []RemoteCopy
		for _, dom := range domains {
			if visibleDoc == nil {
				if visibleDoc, err = d.copyFor(nil, false); err != nil {
					return sendPlan{}, internal(err, "building a copy failed")
				}
			}
			copies = append(copies, RemoteCopy{Domain: dom, Placeholder: visibleDoc, Recipients: remoteTo[dom]})
		}
		for _, a := range remoteBcc {
			doc, err := d.copyFor([]string{formatAddress(a)}, false)
			if err != nil {
				return sendPlan{}, internal(err, "building a Bcc copy failed")
			}
			_, dom, _ := strings.Cut(strings.ToLower(a.Address), "@")
			copies = append(copies, RemoteCopy{Domain: dom, Placeholder: doc, Recipients: []string{a.Address}})
		}
		if plan.grant, err = pre.grant(p.Address, row.MessageID); err != nil {
			return sendPlan{}, err
		}
		plan.remote = copies
	}
	if unprepared {
		return sendPlan{}, errUnprepared
	}
	return plan, nil
}

// write stores the plan in tx: the sent row (inserted when insert is set,
// a forward made as a new message, else the draft's row updated), the inbox
// copies, and the copies for other domains queued with out. It returns the
// inbox copies; any error is the store's or out's, and fails the whole
// transaction.
func (plan sendPlan) write(ctx context.Context, tx meta.Tx, out Outbound, insert bool) ([]meta.Message, error) {
	store := tx.UpdateMessage
	if insert {
		store = tx.InsertMessage
	}
	if err := store(ctx, plan.sent); err != nil {
		return nil, err
	}
	for _, in := range plan.local {
		if err := tx.InsertMessage(ctx, in); err != nil {
			return nil, err
		}
	}
	if len(plan.remote) > 0 {
		if err := out.QueueSend(ctx, tx, plan.author, plan.grant, plan.sent, plan.remote); err != nil {
			return nil, err
		}
	}
	return plan.local, nil
}

// Outbound takes a sent message's copies for other domains, inside the
// send's transaction, so that a send and its queued deliveries commit
// together (package mta).
type Outbound interface {
	// SendGrant signs what lets this domain's MTA deliver an author's
	// message (docs/PROTOCOL.md §10.5). The mailbox asks for it before the
	// send's transaction, never inside it (prepare.go), and hands it to
	// QueueSend as it came.
	SendGrant(ctx context.Context, author, messageID string) (string, error)
	QueueSend(ctx context.Context, tx meta.Tx, author, grant string, sent meta.Message, copies []RemoteCopy) error
}

// Deliveries reads where a sent message is for its remote recipients.
type Deliveries interface {
	// Deliveries returns the state of each remote recipient of sent, in
	// the order they were queued (package mta: its push jobs).
	Deliveries(ctx context.Context, sent meta.Message) ([]Delivery, error)
}

// addDeliveries sets v.Deliveries when v is a message the user sent:
// every recipient in the order of its headers, local ones delivered with
// the send, remote ones as s.cfg.Deliveries says (queued until it says
// otherwise).
func (s *Service) addDeliveries(ctx context.Context, v *Message, row meta.Message) error {
	if row.Status != meta.StatusSent || v.Forward != nil || len(v.rcpts) == 0 {
		return nil
	}
	remote := map[string]Delivery{}
	var extra []Delivery
	if s.cfg.Deliveries != nil {
		ds, err := s.cfg.Deliveries.Deliveries(ctx, row)
		if err != nil {
			return err
		}
		for _, d := range ds {
			remote[strings.ToLower(d.Recipient)] = d
			extra = append(extra, d)
		}
	}
	seen := map[string]bool{}
	for _, a := range v.rcpts {
		key := strings.ToLower(a)
		if seen[key] {
			continue
		}
		seen[key] = true
		_, dom, _ := strings.Cut(key, "@")
		if d, ok := remote[key]; ok {
			v.Deliveries = append(v.Deliveries, d)
			continue
		}
		d := Delivery{Recipient: a, Domain: dom, State: "queued", Updated: row.Updated}
		if norm, err := account.NormalizeAddress(a); err == nil && strings.HasSuffix(norm, "@"+s.cfg.Domain) {
			d.Via, d.State, d.Updated = "local", "delivered", row.Date
		}
		v.Deliveries = append(v.Deliveries, d)
	}
	for _, d := range extra { // a recipient the headers do not show (none expected)
		if !seen[strings.ToLower(d.Recipient)] {
			v.Deliveries = append(v.Deliveries, d)
		}
	}
	return nil
}

// RemoteCopy is one copy of a sent message for another domain: the To/Cc
// copy of a domain (no Bcc), or the copy of one Bcc recipient, each with its
// own Recipients-Digest (docs/PROTOCOL.md §5.2).
type RemoteCopy struct {
	Domain      string
	Placeholder []byte // canonical
	Recipients  []string
}

// checkRefs checks that every resource the draft names is held by the user
// and stored with the declared size, and returns the references. The sizes
// come from pre, stat'ed before the transaction (prepare.go).
func (s *Service) checkRefs(ctx context.Context, r meta.Reader, pre *prepared, userID int64, d *draft) ([]meta.Ref, error) {
	var refs []meta.Ref
	// A size pre lacks is noted and the others checked, so that one run
	// finds every one; then the answer is errUnprepared, whatever else is
	// wrong (with the sizes, the first error may be another).
	unprepared := false
	fail := func(err error) ([]meta.Ref, error) {
		if unprepared {
			return nil, errUnprepared
		}
		return nil, err
	}
	seen := map[resource.ID]bool{}
	for _, l := range d.leaves() {
		if seen[l.ContentID] {
			continue
		}
		seen[l.ContentID] = true
		ok, err := r.Holds(ctx, userID, l.ContentID)
		if err != nil {
			return nil, err
		}
		if !ok {
			return fail(errs.E(errs.Invalid, "unknown_resource", "Content-ID <%s> names no resource of yours: upload it first", l.ContentID))
		}
		size, err := pre.size(l.ContentID)
		if errors.Is(err, errUnprepared) {
			unprepared = true
			continue
		} else if errors.Is(err, resource.ErrNotFound) {
			return fail(errs.E(errs.Invalid, "unknown_resource", "Content-ID <%s> names no stored resource", l.ContentID))
		} else if err != nil {
			return fail(internal(err, "checking a resource failed"))
		}
		if size != l.Size {
			return fail(errs.E(errs.Invalid, "size_mismatch", "Content-ID <%s> declares size %d but the resource has %d bytes", l.ContentID, l.Size, size))
		}
		refs = append(refs, meta.Ref{ID: l.ContentID, Size: l.Size})
	}
	if unprepared {
		return nil, errUnprepared
	}
	return refs, nil
}

// List implements API.
func (s *Service) List(ctx context.Context, opt ListOptions) (List, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return List{}, err
	}
	folder := meta.Folder(opt.Folder)
	if opt.Folder == "" {
		folder = meta.Inbox
	}
	if !folder.Valid() {
		return List{}, errs.E(errs.Invalid, "bad_folder", "no folder %q: use inbox, drafts, sent, archive, requests, junk, trash or a folder of yours", opt.Folder)
	}
	limit := opt.Limit
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	lo := meta.ListOptions{Folder: folder, Limit: limit + 1} // one more: is there a next page?
	if opt.Page != "" {
		pf, key, err := decodePage(opt.Page)
		if err != nil || pf != folder {
			return List{}, errs.E(errs.Invalid, "bad_page", "page is not a next_page token of this folder's listing")
		}
		lo.After = &key
	}
	var rows []meta.Message
	var cursor int64
	err = s.cfg.Meta.View(ctx, func(r meta.Reader) error {
		if err := mustHaveFolder(ctx, r, p.UserID, folder); err != nil {
			return err
		}
		if cursor, err = r.Cursor(ctx); err != nil {
			return err
		}
		rows, err = r.Messages(ctx, p.UserID, lo)
		return err
	})
	if err != nil {
		return List{}, storeErr(err, "listing failed")
	}
	out := List{Messages: make([]Message, 0, len(rows)), Cursor: strconv.FormatInt(cursor, 10)}
	if len(rows) > limit {
		rows = rows[:limit]
		out.NextPage = encodePage(folder, meta.KeyOf(rows[limit-1]))
	}
	for _, row := range rows {
		v := s.view(row, false)
		if err := s.addDeliveries(ctx, &v, row); err != nil {
			return List{}, storeErr(err, "reading the delivery state failed")
		}
		out.Messages = append(out.Messages, v)
	}
	return out, nil
}

// Get implements API.
func (s *Service) Get(ctx context.Context, id string) (Message, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return Message{}, err
	}
	row, err := s.cfg.Meta.Message(ctx, p.UserID, id)
	if err != nil {
		return Message{}, storeErr(err, "reading the message failed")
	}
	v := s.view(row, true)
	if err := s.addDeliveries(ctx, &v, row); err != nil {
		return Message{}, storeErr(err, "reading the delivery state failed")
	}
	if env, err := s.cfg.Meta.Envelope(ctx, p.UserID, id); err == nil {
		v.Chain = chainView(env)
	} else if !errors.Is(err, meta.ErrNotFound) {
		return Message{}, storeErr(err, "reading the message failed")
	}
	return v, nil
}

// Lookup implements API.
func (s *Service) Lookup(ctx context.Context, messageID string) ([]Message, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return nil, err
	}
	messageID = strings.TrimSpace(messageID)
	if !strings.HasPrefix(messageID, "<") {
		messageID = "<" + messageID + ">"
	}
	rows, err := s.cfg.Meta.MessagesByMessageID(ctx, p.UserID, messageID)
	if err != nil {
		return nil, storeErr(err, "looking up the message failed")
	}
	out := make([]Message, 0, len(rows))
	for _, row := range rows {
		v := s.view(row, false)
		if err := s.addDeliveries(ctx, &v, row); err != nil {
			return nil, storeErr(err, "reading the delivery state failed")
		}
		out = append(out, v)
	}
	return out, nil
}

// Changes implements API.
func (s *Service) Changes(ctx context.Context, cursor string, limit int) (Changes, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return Changes{}, err
	}
	since, err := strconv.ParseInt(cursor, 10, 64)
	if err != nil || since < 0 {
		return Changes{}, errs.E(errs.Invalid, "bad_cursor", "the cursor %q is not one this server gave", cursor)
	}
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	resync := errs.E(errs.Gone, "resync_required", "the cursor is too old: list the folders again")
	var out Changes
	err = s.cfg.Meta.View(ctx, func(r meta.Reader) error {
		head, err := r.Cursor(ctx)
		if err != nil {
			return err
		}
		if since > head {
			return resync // a cursor from the future: another server or a restored backup
		}
		chs, err := r.Changes(ctx, p.UserID, since, limit+1)
		if errors.Is(err, meta.ErrCursorGone) {
			return resync
		} else if err != nil {
			return err
		}
		if len(chs) > limit {
			chs, out.More = chs[:limit], true
		}
		out.Changes = make([]Change, 0, len(chs))
		for _, ch := range chs {
			c := Change{Cursor: strconv.FormatInt(ch.Seq, 10), ID: ch.MessageID, Folder: string(ch.Folder), Kind: string(ch.Kind)}
			if ch.Kind != meta.Deleted {
				if row, err := r.Message(ctx, p.UserID, ch.MessageID); err == nil && row.Folder == ch.Folder {
					v := s.view(row, false)
					c.Message = &v
				}
			}
			out.Changes = append(out.Changes, c)
		}
		out.Cursor = cursor
		if len(chs) > 0 {
			out.Cursor = strconv.FormatInt(chs[len(chs)-1].Seq, 10)
		} else if !out.More {
			out.Cursor = strconv.FormatInt(head, 10)
		}
		return nil
	})
	if err != nil {
		return Changes{}, storeErr(err, "reading changes failed")
	}
	return out, nil
}

// Download implements API. The returned reader is a resource.Object, which
// the HTTP handler uses for Range requests.
func (s *Service) Download(ctx context.Context, id string, cid resource.ID) (io.ReadCloser, Attachment, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return nil, Attachment{}, err
	}
	row, err := s.cfg.Meta.Message(ctx, p.UserID, id)
	if err != nil {
		return nil, Attachment{}, storeErr(err, "reading the message failed")
	}
	v := s.view(row, false)
	att, ok := v.attachment(cid)
	if !ok {
		return nil, Attachment{}, errNoResource
	}
	obj, err := s.cfg.Resources.Open(ctx, cid)
	if errors.Is(err, resource.ErrNotFound) {
		switch row.Status {
		case meta.StatusFetching:
			return nil, Attachment{}, errs.E(errs.Conflict, "not_ready", "the resource is still being fetched")
		case meta.StatusFailed:
			// Not a missing file of ours: the pull gave up, and the
			// message's status_reason says why.
			reason := row.StatusReason
			if reason == "" {
				reason = "no reason recorded"
			}
			return nil, Attachment{}, errs.E(errs.Conflict, "resource_unavailable",
				"the resource could not be fetched from the sender's domain: %s", reason)
		}
		s.log.Error("referenced resource missing", "msgid", row.MessageID, "content_id", cid)
		return nil, Attachment{}, errNoResource
	} else if err != nil {
		return nil, Attachment{}, internal(err, "opening the resource failed")
	}
	return obj, att, nil
}

// attachment finds the leaf with a Content-ID among a message's leaves.
func (m Message) attachment(cid resource.ID) (Attachment, bool) {
	for _, a := range m.all {
		if a.ContentID == cid {
			return a, true
		}
	}
	return Attachment{}, false
}

// gcBatch is how many resources one step of garbage collection condemns
// together: a writer of one of them waits for the whole batch's removal.
const gcBatch = 16

// CollectGarbage forgets uploads older than the upload TTL, then removes
// every stored resource that nothing references, by the protocol of
// meta.CollectorWriter (see meta/gc.go): each is condemned in a
// transaction that finds it unreferenced, removed, then released, so that
// an upload of the same bytes meanwhile is never lost (its transaction
// either is seen by the condemnation, or sees it and stores the bytes
// again: Upload). No time of a blob is trusted. grace is the age past
// which a condemnation is taken for a dead collector's and finished: it
// must exceed the longest collection step (a batch of removals).
//
// One collection runs at a time in a process; collections of several
// processes on one store are safe but for a collector stalled beyond
// grace between its condemnation and its removal.
func (s *Service) CollectGarbage(ctx context.Context, grace time.Duration) (removed int, err error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	now := s.now()
	if _, err := s.cfg.Meta.PruneUploads(ctx, now.Add(-s.cfg.UploadTTL)); err != nil {
		return 0, fmt.Errorf("pruning uploads: %w", err)
	}
	if s.cfg.Staging != nil {
		if _, err := s.cfg.Staging.Expire(ctx, now); err != nil {
			s.log.Error("expiring upload sessions", "err", err) // the rest of the collection still runs
		}
	}
	// A dead collector's condemnations: nothing references them (nothing
	// could since), so they are finished as they would have been.
	var left []meta.Condemnation
	err = s.cfg.Meta.View(ctx, func(r meta.Reader) error {
		var err error
		left, err = r.Condemnations(ctx, now.Add(-grace), 0)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("reading condemnations: %w", err)
	}
	var ids []resource.ID
	for _, c := range left {
		ids = append(ids, c.ID)
	}
	if n, err := s.removeCondemned(ctx, ids); err != nil {
		return n, err
	} else {
		removed += n
	}
	var candidates []resource.ID
	err = s.cfg.Resources.Enumerate(ctx, func(info resource.Info) error {
		// A first look outside any transaction: most resources are
		// referenced, and the condemnation decides anyway.
		ok, err := s.cfg.Meta.Referenced(ctx, info.ID)
		if err != nil {
			return err
		}
		if !ok {
			candidates = append(candidates, info.ID)
		}
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("enumerating resources: %w", err)
	}
	for len(candidates) > 0 {
		batch := candidates[:min(gcBatch, len(candidates))]
		candidates = candidates[len(batch):]
		var condemned []resource.ID
		err := s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
			condemned = condemned[:0]
			for _, id := range batch {
				ok, err := tx.Condemn(ctx, id, s.now())
				if err != nil {
					return err
				}
				if ok {
					condemned = append(condemned, id)
				}
			}
			return nil
		})
		if err != nil {
			return removed, fmt.Errorf("condemning resources: %w", err)
		}
		n, err := s.removeCondemned(ctx, condemned)
		removed += n
		if err != nil {
			return removed, err
		}
	}
	if removed > 0 {
		s.log.Info("garbage collected", "resources", removed)
	}
	return removed, nil
}

// removeCondemned removes the blobs of condemned resources, then releases
// them all, removed or not: once Remove has returned no removal of ours is
// under way, and a writer waiting for the release finds out for itself
// whether the bytes are still there.
func (s *Service) removeCondemned(ctx context.Context, ids []resource.ID) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	var removed int
	var rerr error
	for _, id := range ids {
		if err := s.cfg.Resources.Remove(ctx, id); err != nil {
			rerr = fmt.Errorf("removing %s: %w", id, err)
			break
		}
		removed++
	}
	// Released even when the collection's context ended: a condemnation
	// left standing holds writers back until the next collection.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := s.cfg.Meta.Update(rctx, func(tx meta.Tx) error {
		for _, id := range ids {
			if err := tx.Release(rctx, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return removed, errors.Join(rerr, fmt.Errorf("releasing condemned resources: %w", err))
	}
	return removed, rerr
}

// Waiting for garbage collection to release a condemned resource
// (meta.CondemnedError): polled, since the collector's step is one batch
// of removals, milliseconds.
const (
	condemnedPoll = 5 * time.Millisecond
	condemnedWait = 30 * time.Second
	// maxCondemned bounds how often one write meets a condemnation before
	// it gives up (each meeting means another collection condemned it
	// again meanwhile).
	maxCondemned = 8
)

// errCollecting answers a write that kept meeting garbage collection.
var errCollecting = errs.E(errs.Temporary, "collecting",
	"the resource is being garbage collected; try again")

// awaitRelease waits until garbage collection has released id.
func (s *Service) awaitRelease(ctx context.Context, id resource.ID) error {
	deadline := time.Now().Add(condemnedWait)
	for {
		var c bool
		err := s.cfg.Meta.View(ctx, func(r meta.Reader) error {
			var err error
			c, err = r.Condemned(ctx, id)
			return err
		})
		if err != nil {
			return internal(err, "reading the state of garbage collection failed")
		}
		if !c {
			return nil
		}
		if time.Now().After(deadline) {
			return errs.Wrap(fmt.Errorf("%s condemned for more than %s", id, condemnedWait), errs.Temporary, "collecting",
				"the resource is being garbage collected; try again")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(condemnedPoll):
		}
	}
}

// newID returns an opaque message id: "m" and 24 base32 characters.
func newID() string {
	var b [15]byte
	rand.Read(b[:])
	return "m" + strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}
