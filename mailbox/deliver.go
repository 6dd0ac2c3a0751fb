package mailbox

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
)

// The mailbox service is the one writer of mailbox rows (meta.Message and
// the envelopes kept with them): whatever package decides a write, the
// inbound receiver (a push accepted), the MTA (a pull's outcome, a
// delivery-status notice) or pullmail fsck (a copy to fetch again), it goes
// through one of these operations. Each runs inside the caller's
// transaction, tx, so that the rows commit with the caller's own (the pull
// job a push queues, the state of the job that finishes) or not at all,
// and does there everything the write implies: the recipients' automatic
// forwarding included. The callers reach them through interfaces of their
// own (inbound.Mailbox, mta.Mailbox), so that they do not import this
// package; hygiene_test.go fails when a package but this one writes a row.

// Receive stores a message another domain pushed, in tx, the transaction
// of the inbound receiver that accepts the push (docs/PROTOCOL.md §11.2):
// an inbox copy of msg for each recipient (this domain's addresses, in the
// form account.NormalizeAddress gives), status fetching, with the envelope
// as pushed (kept so that the copy can be forwarded, §12.2). msg carries
// what the caller parsed (Message-ID, headers, placeholder, refs and
// times); the row's ID, owner, folder and status are the mailbox's. The
// recipients' automatic forwarding rules apply in the same transaction
// (§12.6).
//
// It returns every copy made for this domain's users, the recipients'
// first, then those made by their rules, by reference: the push's pull
// completes them all. A recipient without an account refuses the push
// (unknown_recipient) before anything is written.
func (s *Service) Receive(ctx context.Context, tx meta.Tx, recipients []string, msg meta.Message, envelope []byte) ([]meta.Message, error) {
	if len(envelope) == 0 {
		return nil, errors.New("mailbox: a received message needs the envelope it came with")
	}
	var unknown []string
	var ids []int64
	seen := map[int64]bool{}
	for _, addr := range recipients {
		u, err := tx.UserByAddress(ctx, addr)
		if errors.Is(err, meta.ErrNotFound) {
			unknown = append(unknown, addr)
			continue
		} else if err != nil {
			return nil, fmt.Errorf("looking up %s: %w", addr, err)
		}
		if !seen[u.ID] {
			seen[u.ID] = true
			ids = append(ids, u.ID)
		}
	}
	if len(unknown) > 0 {
		return nil, errs.E(errs.Invalid, "unknown_recipient", "no such user: %s", strings.Join(unknown, ", "))
	}
	var made []meta.Message
	for _, uid := range ids {
		row := msg
		row.ID, row.UserID, row.Folder, row.Status, row.StatusReason, row.Seen = newID(), uid, meta.Inbox, meta.StatusFetching, "", false
		if err := tx.InsertMessage(ctx, row); errors.Is(err, meta.ErrCondemned) {
			// A resource it names, stored here and unreferenced, is
			// being garbage collected this moment: the sender's MTA
			// pushes again shortly, and the copy then pulls it.
			return nil, errs.Wrap(err, errs.Temporary, "collecting",
				"a resource of the message is being garbage collected here; push again later")
		} else if err != nil {
			return nil, fmt.Errorf("storing the copy of user %d: %w", uid, err)
		}
		if err := tx.SetEnvelope(ctx, row.ID, envelope); err != nil {
			return nil, fmt.Errorf("storing the envelope of user %d: %w", uid, err)
		}
		made = append(made, row)
	}
	var rules autoLog
	more, err := s.applyRules(ctx, tx, nil, &rules, made, envelope)
	if err != nil {
		return nil, fmt.Errorf("after delivery: %w", err)
	}
	// Logged and counted now, in the caller's transaction: its commit is
	// the caller's.
	rules.flush(s)
	return append(made, more...), nil
}

// DeliverNotice puts a delivery-status notice, a Placeholder Message of
// the mail system's whose resources are stored already (canonical JSON),
// in a user's inbox as row id, in tx: the MTA's transaction that gives up
// on the push it tells of (docs/PROTOCOL.md §11.4). The caller derives id
// from its job, so that a notice is stored once (meta.ErrExists). No rule
// forwards a notice: it is the mail system's word to the user, not mail
// they received.
func (s *Service) DeliverNotice(ctx context.Context, tx meta.Tx, userID int64, id string, notice []byte) error {
	m, err := placeholder.Parse(notice, placeholder.Limits{})
	if err != nil {
		return fmt.Errorf("the delivery-status notice: %w", err)
	}
	leaves, err := m.Leaves()
	if err != nil {
		return fmt.Errorf("the delivery-status notice: %w", err)
	}
	if _, err := tx.UserByID(ctx, userID); err != nil {
		return fmt.Errorf("the notice's recipient, user %d: %w", userID, err)
	}
	now := s.now()
	date := now
	if d, err := mail.ParseDate(m.Header.Get(placeholder.HDate).String()); err == nil {
		date = d
	}
	var refs []meta.Ref
	for _, l := range leaves {
		refs = append(refs, meta.Ref{ID: l.ID, Size: l.Size})
	}
	h := m.Header
	return tx.InsertMessage(ctx, meta.Message{ID: id, UserID: userID, Folder: meta.Inbox,
		MessageID: h.Get(placeholder.HMessageID).String(), ThreadID: h.Get(placeholder.HThreadID).String(),
		Status: meta.StatusComplete, From: h.Get(placeholder.HFrom).String(), Subject: h.Get(placeholder.HSubject).String(),
		Date: date, Created: now, Updated: now, Placeholder: m.Canonical(), Refs: refs})
}

// SetPullOutcome ends the fetching of a received copy, in tx: the MTA's
// transaction that finishes the copy's pull. status is complete (every
// resource is held) or failed (the pull gave up; reason says why, for
// the user: docs/PROTOCOL.md §11.4). A copy gone (deleted by its owner) or
// no longer fetching is left alone.
func (s *Service) SetPullOutcome(ctx context.Context, tx meta.Tx, userID int64, id string, status meta.Status, reason string) error {
	if status != meta.StatusComplete && status != meta.StatusFailed {
		return fmt.Errorf("mailbox: a pull ends complete or failed, not %s", status)
	}
	return s.setStatus(ctx, tx, userID, id, func(m meta.Message) bool { return m.Status == meta.StatusFetching }, status, reason)
}

// Refetch puts a received copy back to fetching, in tx: the transaction of
// pullmail fsck --repair that queues its pull again, a resource it names
// having been lost here. A copy gone or still fetching is left alone.
func (s *Service) Refetch(ctx context.Context, tx meta.Tx, userID int64, id string) error {
	return s.setStatus(ctx, tx, userID, id, func(m meta.Message) bool { return m.Status != meta.StatusFetching }, meta.StatusFetching, "")
}

// setStatus moves the copy to status when from says it may.
func (s *Service) setStatus(ctx context.Context, tx meta.Tx, userID int64, id string, from func(meta.Message) bool, status meta.Status, reason string) error {
	m, err := tx.Message(ctx, userID, id)
	if errors.Is(err, meta.ErrNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("reading copy %s: %w", id, err)
	}
	if !from(m) {
		return nil
	}
	m.Status, m.StatusReason, m.Updated = status, reason, s.now()
	if err := tx.UpdateMessage(ctx, m); err != nil {
		return fmt.Errorf("updating copy %s: %w", id, err)
	}
	return nil
}
