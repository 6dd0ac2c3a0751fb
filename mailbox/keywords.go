package mailbox

import (
	"context"
	"slices"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
)

// Flags for mail clients. IMAP (package imapd) and JMAP (package jmap) read
// and set a message's flags here, as the webmail and the CLI do, so that
// all of them agree: Seen, and the keywords of meta/keywords.go. A folder's
// UIDs and modseqs (meta.FolderState, meta.IndexEntry) are the store's.

// SetKeywords sets the message's Seen (unless seen is nil) and adds, then
// removes, keywords, in one transaction. A keyword that is not one
// (meta.NormalizeKeywords) is bad_keyword and changes nothing; a change
// that changes nothing writes nothing (no new modseq).
func (s *Service) SetKeywords(ctx context.Context, id string, seen *bool, add, remove []string) (Message, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return Message{}, err
	}
	add, err = meta.NormalizeKeywords(add)
	if err != nil {
		return Message{}, errs.E(errs.Invalid, "bad_keyword", "%v", err)
	}
	remove, err = meta.NormalizeKeywords(remove)
	if err != nil {
		return Message{}, errs.E(errs.Invalid, "bad_keyword", "%v", err)
	}
	var row meta.Message
	err = s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		row, err = tx.Message(ctx, p.UserID, id)
		if err != nil {
			return err
		}
		ks := slices.Concat(row.Keywords, add)
		ks = slices.DeleteFunc(ks, func(k string) bool { return slices.Contains(remove, k) })
		ks, err = meta.NormalizeKeywords(ks)
		if err != nil {
			return errs.E(errs.Invalid, "too_many_keywords", "%v", err)
		}
		newSeen := row.Seen
		if seen != nil {
			newSeen = *seen
		}
		if newSeen == row.Seen && slices.Equal(ks, row.Keywords) {
			return nil
		}
		row.Seen, row.Keywords, row.Updated = newSeen, ks, s.now()
		if err := tx.UpdateMessage(ctx, row); err != nil {
			return err
		}
		row, err = tx.Message(ctx, p.UserID, id) // with the store's new modseq
		return err
	})
	if err != nil {
		return Message{}, storeErr(err, "updating the message's flags failed")
	}
	return s.view(row, false), nil
}

// FolderState returns the folder's UIDVALIDITY, next UID and highest
// modseq; a folder that does not exist is bad_folder.
func (s *Service) FolderState(ctx context.Context, folder string) (meta.FolderState, error) {
	p, f, err := s.clientFolder(ctx, folder)
	if err != nil {
		return meta.FolderState{}, err
	}
	var fs meta.FolderState
	err = s.cfg.Meta.View(ctx, func(r meta.Reader) error {
		if err := mustHaveFolder(ctx, r, p.UserID, f); err != nil {
			return err
		}
		fs, err = r.FolderState(ctx, p.UserID, f)
		return err
	})
	if err != nil {
		return meta.FolderState{}, storeErr(err, "reading the folder failed")
	}
	return fs, nil
}

// FolderIndex returns the folder's messages changed after changedSince (0:
// all), ordered by UID, with their flags: what an IMAP session numbers.
func (s *Service) FolderIndex(ctx context.Context, folder string, changedSince int64) ([]meta.IndexEntry, error) {
	p, f, err := s.clientFolder(ctx, folder)
	if err != nil {
		return nil, err
	}
	var es []meta.IndexEntry
	err = s.cfg.Meta.View(ctx, func(r meta.Reader) error {
		if err := mustHaveFolder(ctx, r, p.UserID, f); err != nil {
			return err
		}
		es, err = r.FolderIndex(ctx, p.UserID, f, changedSince)
		return err
	})
	if err != nil {
		return nil, storeErr(err, "reading the folder failed")
	}
	return es, nil
}

func (s *Service) clientFolder(ctx context.Context, folder string) (auth.Principal, meta.Folder, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return auth.Principal{}, "", err
	}
	f := meta.Folder(folder)
	if !f.Valid() {
		return auth.Principal{}, "", errs.E(errs.Invalid, "bad_folder", "no folder %q", folder)
	}
	return p, f, nil
}
