package mailbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// ImportDelivery is a message read from a mail file (mbox, Maildir) and
// converted (mimeconv), for one user: as SMTPDelivery, with the state the
// file gave it.
type ImportDelivery struct {
	Address   string // the user's address
	Message   *placeholder.Message
	Resources []resource.Info // every resource the message and its record need (stored)
	Record    resource.ID
	Digest    string // the original message's b64u SHA-256 (the record's sha256)
	Epoch     int64  // CollectorEpoch, read before the resources were stored
	Seen      bool
	// Trash puts the message in trash (deleted in the other client), from
	// where it is purged meta.TrashRetention after the import.
	Trash bool
}

// ImportReceipt is what Import did: the copy, and whether it was there
// already (the same bytes imported before).
type ImportReceipt struct {
	Message  meta.Message
	Repeated bool
}

// importKey is the idempotency key of an imported message: its digest.
func importKey(digest string) string { return "import:" + digest }

// importForever is the expiry of an import's record: never (the latest time
// every store holds, Unix nanoseconds, ends in 2262). An import is
// resumed, or run again on the same file, at any time later, and must not
// store a message twice (ReceiveSMTP's week would not do).
var importForever = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// Import stores a message of a mail file for its user, complete at once,
// in inbox (or trash), read or not as the file said. A message with the
// same bytes (by digest) imported for the user before, whose copy the user
// still has, is not stored again: its copy is returned, Repeated. The
// import's record lasts as long as the user, so an import run again at any
// time stores nothing twice.
func (s *Service) Import(ctx context.Context, d ImportDelivery) (ImportReceipt, error) {
	if d.Address == "" || d.Message == nil || d.Digest == "" {
		return ImportReceipt{}, errors.New("mailbox: an import needs an address, a message and its digest")
	}
	addr, err := account.NormalizeAddress(d.Address)
	if err != nil {
		return ImportReceipt{}, errs.Wrap(err, errs.Invalid, "bad_address", "invalid address")
	}
	c, err := s.converted(d.Message, "", d.Record, d.Resources)
	if err != nil {
		return ImportReceipt{}, err
	}
	h := &c.msg.Header
	key := importKey(d.Digest)
	var rec ImportReceipt
	err = s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		rec = ImportReceipt{}
		u, err := tx.UserByAddress(ctx, addr)
		if errors.Is(err, meta.ErrNotFound) {
			return errs.E(errs.NotFound, "not_found", "no such user: %s", addr)
		} else if err != nil {
			return fmt.Errorf("looking up %s: %w", addr, err)
		}
		if row, ok, err := importedCopy(ctx, tx, u.ID, key); err != nil {
			return err
		} else if ok {
			rec = ImportReceipt{Message: row, Repeated: true}
			return nil
		}
		for _, r := range c.refs {
			if err := meta.CheckStored(ctx, tx, r.ID, d.Epoch); err != nil {
				return err
			}
		}
		row := meta.Message{ID: newID(), UserID: u.ID, Folder: meta.Inbox,
			MessageID: h.Get(placeholder.HMessageID).String(), ThreadID: h.Get(placeholder.HThreadID).String(),
			Status: meta.StatusComplete, Seen: d.Seen, From: h.Get(placeholder.HFrom).String(), Subject: h.Get(placeholder.HSubject).String(),
			Date: c.date, Created: c.now, Updated: c.now, Placeholder: c.doc, Refs: c.refs}
		if d.Trash {
			row.Folder, row.TrashedFrom, row.Trashed = meta.Trash, meta.Inbox, c.now
		}
		if err := tx.InsertMessage(ctx, row); err != nil {
			return fmt.Errorf("storing the imported message: %w", err)
		}
		if err := tx.PutIdempotency(ctx, meta.Idempotency{UserID: u.ID, Key: key, Request: "import", Result: []byte(row.ID),
			Created: c.now, Expires: importForever}); err != nil {
			return fmt.Errorf("remembering the import: %w", err)
		}
		rec.Message = row
		return nil
	})
	if errors.Is(err, meta.ErrCondemned) || errors.Is(err, meta.ErrCollectedSince) {
		return ImportReceipt{}, errCollecting
	}
	if err != nil {
		return ImportReceipt{}, err
	}
	return rec, nil
}

// Imported reports whether the message with digest was imported for the
// user at address before (and the user still has the copy), without
// converting or storing anything: an import checks each message of a
// Maildir with it before it reads the message twice.
func (s *Service) Imported(ctx context.Context, address, digest string) (id string, ok bool, err error) {
	addr, err := account.NormalizeAddress(address)
	if err != nil {
		return "", false, errs.Wrap(err, errs.Invalid, "bad_address", "invalid address")
	}
	// The record is read in a write transaction: idempotency records have
	// no read-only accessor (they are written with the work they record).
	err = s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		u, err := tx.UserByAddress(ctx, addr)
		if errors.Is(err, meta.ErrNotFound) {
			return errs.E(errs.NotFound, "not_found", "no such user: %s", addr)
		} else if err != nil {
			return err
		}
		row, found, err := importedCopy(ctx, tx, u.ID, importKey(digest))
		id, ok = row.ID, found
		return err
	})
	return id, ok, err
}

// importedCopy is the user's copy that an import record names, if both
// are there.
func importedCopy(ctx context.Context, tx meta.Tx, userID int64, key string) (meta.Message, bool, error) {
	prev, err := tx.Idempotency(ctx, userID, key)
	if errors.Is(err, meta.ErrNotFound) {
		return meta.Message{}, false, nil
	} else if err != nil {
		return meta.Message{}, false, err
	}
	row, err := tx.Message(ctx, userID, string(prev.Result))
	if errors.Is(err, meta.ErrNotFound) {
		return meta.Message{}, false, nil // deleted since: imported again
	} else if err != nil {
		return meta.Message{}, false, err
	}
	return row, true, nil
}
