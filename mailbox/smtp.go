package mailbox

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"time"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// HMIMERecord names, in the placeholder of a message that came in by SMTP,
// the resource holding its mimeconv record (docs/PROTOCOL.md §13.7): what
// writes the message back byte for byte. The message references it (so it
// is kept while the message is), but it is not a leaf, so it grants nothing
// to another domain (§3.5).
const HMIMERecord = "X-MIME-Record"

// SMTPDelivery is a message that came in by SMTP, converted already: its
// placeholder, every resource it and its record need (stored), the record's
// resource, and the trace line to put first in its Received.
type SMTPDelivery struct {
	Recipients []string // this domain's addresses, normalised
	Message    *placeholder.Message
	Resources  []resource.Info
	Record     resource.ID
	Digest     string // the original message's b64u SHA-256 (the record's sha256)
	Received   string // "from HELO (IP) by HOST with ESMTPS; DATE"
	// Epoch is garbage collection's epoch (CollectorEpoch) read before the
	// resources were stored: if a collection ran since, their bytes may be
	// gone, and the delivery is refused as temporary (collecting) for the
	// sender to retry (an SMTP stream cannot be read twice).
	Epoch int64
}

// CollectorEpoch reads garbage collection's epoch, for a writer that is
// about to store bytes outside the mailbox (meta.CheckStored).
func (s *Service) CollectorEpoch(ctx context.Context) (int64, error) { return s.collectorEpoch(ctx) }

// SMTPReceipt is what ReceiveSMTP did: the copies, of which Repeated were
// stored before (the same bytes delivered again).
type SMTPReceipt struct {
	Copies   []meta.Message
	Repeated int
}

// smtpRetention is how long a delivery by SMTP is remembered, so that a
// sender that retries after a lost reply (RFC 5321 §4.5.4.1) does not
// deliver twice.
const smtpRetention = 7 * 24 * time.Hour

// ReceiveSMTP stores d for each recipient in one transaction: an inbox copy,
// complete at once (its resources are here). The same message (by its
// digest) delivered again to a recipient within a week is not stored again:
// its copy's id is returned instead. A recipient without an account refuses
// the whole delivery (unknown_recipient) before anything is written; the
// SMTP server checks each at RCPT already. Automatic forwarding rules do
// not apply to mail from SMTP yet (they forward by chain, which needs a
// signed envelope).
func (s *Service) ReceiveSMTP(ctx context.Context, d SMTPDelivery) (SMTPReceipt, error) {
	if len(d.Recipients) == 0 || d.Message == nil || d.Digest == "" {
		return SMTPReceipt{}, errors.New("mailbox: an SMTP delivery needs recipients, a message and its digest")
	}
	c, err := s.converted(d.Message, d.Received, d.Record, d.Resources)
	if err != nil {
		return SMTPReceipt{}, err
	}
	h, doc, refs, date, now := &c.msg.Header, c.doc, c.refs, c.date, c.now
	key := "smtp:" + d.Digest
	var made []meta.Message
	repeated := 0
	err = s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		made, repeated = made[:0], 0
		var users []int64
		seenU := map[int64]bool{}
		for _, addr := range d.Recipients {
			u, err := tx.UserByAddress(ctx, addr)
			if errors.Is(err, meta.ErrNotFound) {
				return errs.E(errs.Invalid, "unknown_recipient", "no such user: %s", addr)
			} else if err != nil {
				return fmt.Errorf("looking up %s: %w", addr, err)
			}
			if !seenU[u.ID] {
				seenU[u.ID] = true
				users = append(users, u.ID)
			}
		}
		for _, r := range refs {
			if err := meta.CheckStored(ctx, tx, r.ID, d.Epoch); err != nil {
				return err
			}
		}
		for _, uid := range users {
			if prev, err := tx.Idempotency(ctx, uid, key); err == nil && now.Before(prev.Expires) {
				if row, err := tx.Message(ctx, uid, string(prev.Result)); err == nil {
					made = append(made, row)
					repeated++
					continue
				}
			} else if err != nil && !errors.Is(err, meta.ErrNotFound) {
				return err
			}
			row := meta.Message{ID: newID(), UserID: uid, Folder: meta.Inbox,
				MessageID: h.Get(placeholder.HMessageID).String(), ThreadID: h.Get(placeholder.HThreadID).String(),
				Status: meta.StatusComplete, From: h.Get(placeholder.HFrom).String(), Subject: h.Get(placeholder.HSubject).String(),
				Date: date, Created: now, Updated: now, Placeholder: doc, Refs: refs}
			if err := tx.InsertMessage(ctx, row); err != nil {
				return fmt.Errorf("storing the copy of user %d: %w", uid, err)
			}
			if err := tx.PutIdempotency(ctx, meta.Idempotency{UserID: uid, Key: key, Request: "smtp", Result: []byte(row.ID),
				Created: now, Expires: now.Add(smtpRetention)}); err != nil {
				return fmt.Errorf("remembering the delivery: %w", err)
			}
			made = append(made, row)
		}
		return nil
	})
	if errors.Is(err, meta.ErrCondemned) || errors.Is(err, meta.ErrCollectedSince) {
		return SMTPReceipt{}, errCollecting
	}
	if err != nil {
		return SMTPReceipt{}, err
	}
	return SMTPReceipt{Copies: made, Repeated: repeated}, nil
}

// convertedMessage is a converted message (SMTP, import) made ready to
// store: its placeholder with what this server adds, canonical, the refs
// of its resources (each once) and its date.
type convertedMessage struct {
	msg  *placeholder.Message
	doc  []byte
	refs []meta.Ref
	date time.Time
	now  time.Time
}

// converted adds to a converted message a Message-ID (and X-Thread-ID) if
// it has none, the trace line received first in Received (if any) and the
// record's Content-ID (X-MIME-Record), and checks the result.
func (s *Service) converted(msg *placeholder.Message, received string, record resource.ID, resources []resource.Info) (convertedMessage, error) {
	m := msg.Clone()
	h := &m.Header
	if !h.Has(placeholder.HMessageID) {
		id := placeholder.NewMessageID(s.cfg.Domain)
		h.SetString(placeholder.HMessageID, id)
		if !h.Has(placeholder.HThreadID) {
			h.SetString(placeholder.HThreadID, id)
		}
	}
	if received != "" {
		if prev := h.Get(placeholder.HReceived); !prev.IsZero() {
			h.Set(placeholder.HReceived, placeholder.List(append([]string{received}, prev.List()...)...))
		} else {
			h.SetString(placeholder.HReceived, received)
		}
	}
	if record != "" {
		h.SetString(HMIMERecord, record.ContentID())
	}
	if err := m.Validate(placeholder.Limits{}); err != nil {
		return convertedMessage{}, errs.Wrap(err, errs.Invalid, placeholder.CodeDocumentTooLarge, "the converted message is not a valid placeholder")
	}
	c := convertedMessage{msg: m, doc: m.Canonical(), now: s.now()}
	seen := map[resource.ID]bool{}
	for _, r := range resources {
		if !seen[r.ID] {
			seen[r.ID] = true
			c.refs = append(c.refs, meta.Ref{ID: r.ID, Size: r.Size})
		}
	}
	c.date = c.now
	if t, err := mail.ParseDate(h.Get(placeholder.HDate).String()); err == nil {
		c.date = t
	}
	return c, nil
}
