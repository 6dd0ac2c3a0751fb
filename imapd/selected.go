package imapd

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
)

// selected is the selected mailbox of a session: the folder's index as the
// session last told the client, ordered by UID; a message's sequence
// number is its place here, from 1.
type selected struct {
	folder   meta.Folder
	readOnly bool
	state    meta.FolderState
	index    []meta.IndexEntry
}

// flagsOf maps a message's Seen and keywords to IMAP flags: \Seen is Seen,
// the system flags are their JMAP keywords, any other keyword is itself.
func flagsOf(e meta.IndexEntry) []imap.Flag {
	var fl []imap.Flag
	if e.Seen {
		fl = append(fl, imap.FlagSeen)
	}
	for _, k := range e.Keywords {
		fl = append(fl, flagOfKeyword(k))
	}
	return fl
}

var systemFlags = map[string]imap.Flag{
	meta.KeywordAnswered: imap.FlagAnswered, meta.KeywordFlagged: imap.FlagFlagged,
	meta.KeywordDeleted: imap.FlagDeleted, meta.KeywordDraft: imap.FlagDraft,
}

func flagOfKeyword(k string) imap.Flag {
	if f, ok := systemFlags[k]; ok {
		return f
	}
	return imap.Flag(k)
}

// keywordsOf splits IMAP flags into Seen (set when \Seen is among them)
// and keywords; \Recent and other unknown system flags are dropped.
func keywordsOf(flags []imap.Flag) (seen bool, kws []string) {
	for _, f := range flags {
		if strings.EqualFold(string(f), string(imap.FlagSeen)) {
			seen = true
			continue
		}
		found := false
		for k, sf := range systemFlags {
			if strings.EqualFold(string(f), string(sf)) {
				kws, found = append(kws, k), true
			}
		}
		if !found && !strings.HasPrefix(string(f), `\`) {
			kws = append(kws, strings.ToLower(string(f)))
		}
	}
	return seen, kws
}

// Select implements imapserver.Session (SELECT and EXAMINE).
func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.sel = nil
	f := FolderOf(name)
	st, err := s.srv.cfg.Mailbox.FolderState(s.ctx, string(f))
	if err != nil {
		return nil, noSuchMailbox(err)
	}
	idx, err := s.srv.cfg.Mailbox.FolderIndex(s.ctx, string(f), 0)
	if err != nil {
		return nil, imapErr(err, "reading the mailbox")
	}
	s.sel = &selected{folder: f, readOnly: options != nil && options.ReadOnly, state: st, index: idx}
	d := &imap.SelectData{
		Flags:          []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft},
		PermanentFlags: []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft, imap.FlagWildcard},
		NumMessages:    uint32(len(idx)),
		UIDNext:        imap.UID(st.UIDNext),
		UIDValidity:    st.UIDValidity,
	}
	for i, e := range idx {
		if !e.Seen {
			d.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	return d, nil
}

// noSuchMailbox is the NO for a mailbox name that is no folder.
func noSuchMailbox(err error) error {
	var e *errs.Error
	if errors.As(err, &e) && (e.Kind == errs.NotFound || e.Kind == errs.Invalid) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "no such mailbox"}
	}
	return imapErr(err, "opening the mailbox")
}

// Unselect implements imapserver.Session.
func (s *session) Unselect() error {
	s.sel = nil
	return nil
}

// each calls fn for every message of the selected mailbox in set, in
// sequence order; "*" is the last message (none in an empty mailbox).
func (s *session) each(set imap.NumSet, fn func(seq uint32, e meta.IndexEntry) error) error {
	idx := s.sel.index
	if len(idx) == 0 {
		return nil
	}
	maxSeq, maxUID := uint32(len(idx)), idx[len(idx)-1].UID
	switch set := set.(type) {
	case imap.SeqSet:
		for _, r := range set {
			lo, hi := r.Start, r.Stop
			if lo == 0 {
				lo = maxSeq
			}
			if hi == 0 {
				hi = maxSeq
			}
			if lo > hi {
				lo, hi = hi, lo
			}
			if lo < 1 {
				lo = 1
			}
			for seq := lo; seq <= hi && seq <= maxSeq; seq++ {
				if err := fn(seq, idx[seq-1]); err != nil {
					return err
				}
			}
		}
	case imap.UIDSet:
		for i, e := range idx {
			if inUIDSet(set, e.UID, maxUID) {
				if err := fn(uint32(i+1), e); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Fetch implements imapserver.Session. Message bytes are mailbox.Service.Raw
// (the one MIME renderer), streamed: a literal needs its size first, so a
// body is rendered twice, once counted and once written; nothing holds a
// whole message.
func (s *session) Fetch(w *imapserver.FetchWriter, set imap.NumSet, o *imap.FetchOptions) error {
	return s.each(set, func(seq uint32, e meta.IndexEntry) error {
		if o.ChangedSince > 0 && e.ModSeq <= int64(o.ChangedSince) {
			return nil
		}
		markSeen := false
		for _, b := range o.BodySection {
			if !b.Peek && !e.Seen && !s.sel.readOnly {
				markSeen = true
			}
		}
		if markSeen {
			t := true
			if _, err := s.srv.cfg.Mailbox.SetKeywords(s.ctx, e.ID, &t, nil, nil); err != nil {
				return imapErr(err, "setting \\Seen")
			}
			e.Seen = true
			s.sel.index[seq-1].Seen = true
		}
		mw := w.CreateMessage(seq)
		mw.WriteUID(imap.UID(e.UID)) // UID FETCH needs it; it costs nothing
		if o.Flags || markSeen {
			mw.WriteFlags(flagsOf(e))
		}
		if o.InternalDate {
			mw.WriteInternalDate(e.Created)
		}
		if o.RFC822Size {
			n, err := s.size(e.ID, whole)
			if err != nil {
				mw.Close()
				return err
			}
			mw.WriteRFC822Size(n)
		}
		if o.Envelope {
			env, err := s.envelope(e.ID)
			if err != nil {
				mw.Close()
				return err
			}
			mw.WriteEnvelope(env)
		}
		if o.BodyStructure != nil {
			bs, err := s.bodyStructure(e.ID)
			if err != nil {
				mw.Close()
				return err
			}
			mw.WriteBodyStructure(bs)
		}
		for _, b := range o.BodySection {
			if err := s.writeSection(mw, e.ID, b); err != nil {
				mw.Close()
				return err
			}
		}
		return mw.Close()
	})
}

// Poll implements imapserver.Session: the selected mailbox's index is read
// again and the client told what changed since (flags, new messages, and,
// when allowed, expunges).
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	idx, err := s.srv.cfg.Mailbox.FolderIndex(s.ctx, string(s.sel.folder), 0)
	if err != nil {
		return imapErr(err, "reading the mailbox")
	}
	return s.update(w, idx, allowExpunge)
}

// update tells the client how idx differs from what it knows and makes
// idx what it knows; without allowExpunge, messages gone stay numbered.
func (s *session) update(w *imapserver.UpdateWriter, idx []meta.IndexEntry, allowExpunge bool) error {
	now := map[uint32]meta.IndexEntry{}
	for _, e := range idx {
		now[e.UID] = e
	}
	old := s.sel.index
	if allowExpunge {
		for i := len(old) - 1; i >= 0; i-- {
			if _, ok := now[old[i].UID]; !ok {
				if err := w.WriteExpunge(uint32(i + 1)); err != nil {
					return err
				}
				old = slices.Delete(old, i, i+1)
			}
		}
	}
	known := map[uint32]bool{}
	for i, e := range old {
		known[e.UID] = true
		if n, ok := now[e.UID]; ok && n.ModSeq != e.ModSeq {
			old[i] = n
			if err := w.WriteMessageFlags(uint32(i+1), imap.UID(n.UID), flagsOf(n)); err != nil {
				return err
			}
		}
	}
	grew := false
	for _, e := range idx {
		if !known[e.UID] && (len(old) == 0 || e.UID > old[len(old)-1].UID) {
			old, grew = append(old, e), true
		}
	}
	s.sel.index = old
	if grew {
		return w.WriteNumMessages(uint32(len(old)))
	}
	return nil
}

// Idle implements imapserver.Session (RFC 2177): the mailbox is polled
// every IdlePoll until DONE, so a delivery shows within that.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	t := time.NewTicker(s.srv.cfg.IdlePoll)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-s.srv.ctx.Done():
			return nil
		case <-t.C:
			if err := s.Poll(w, true); err != nil {
				return err
			}
		}
	}
}

// Store implements imapserver.Session: FLAGS, +FLAGS, -FLAGS (.SILENT)
// through mailbox.Service.SetKeywords, with UNCHANGEDSINCE (RFC 7162).
func (s *session) Store(w *imapserver.FetchWriter, set imap.NumSet, f *imap.StoreFlags, o *imap.StoreOptions) error {
	if s.sel.readOnly {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "the mailbox is read-only (EXAMINE)"}
	}
	seen, kws := keywordsOf(f.Flags)
	var modified []uint32
	err := s.each(set, func(seq uint32, e meta.IndexEntry) error {
		if o != nil && o.UnchangedSince > 0 && e.ModSeq > int64(o.UnchangedSince) {
			modified = append(modified, seq)
			return nil
		}
		var setSeen *bool
		var add, remove []string
		switch f.Op {
		case imap.StoreFlagsAdd:
			add = kws
			if seen {
				setSeen = &seen
			}
		case imap.StoreFlagsDel:
			remove = kws
			if seen {
				no := false
				setSeen = &no
			}
		case imap.StoreFlagsSet:
			setSeen, add = &seen, kws
			for _, k := range e.Keywords {
				if !slices.Contains(kws, k) {
					remove = append(remove, k)
				}
			}
		}
		m, err := s.srv.cfg.Mailbox.SetKeywords(s.ctx, e.ID, setSeen, add, remove)
		if err != nil {
			return imapErr(err, "setting the flags")
		}
		e.Seen, e.Keywords = m.Seen, m.Keywords
		s.sel.index[seq-1] = e
		if !f.Silent {
			mw := w.CreateMessage(seq)
			mw.WriteUID(imap.UID(e.UID))
			mw.WriteFlags(flagsOf(e))
			return mw.Close()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(modified) > 0 {
		var ss imap.SeqSet
		for _, n := range modified {
			ss.AddNum(n)
		}
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "MODIFIED " + imap.ResponseCode(ss.String()), Text: "some messages changed since"}
	}
	return nil
}

// Expunge implements imapserver.Session (EXPUNGE, UID EXPUNGE): a message
// flagged \Deleted outside Trash moves to Trash (as the webmail's delete:
// restorable for meta.TrashRetention); in Trash it is purged.
func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if s.sel.readOnly {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "the mailbox is read-only (EXAMINE)"}
	}
	for i := len(s.sel.index) - 1; i >= 0; i-- {
		e := s.sel.index[i]
		if !slices.Contains(e.Keywords, meta.KeywordDeleted) || (uids != nil && !uids.Contains(imap.UID(e.UID))) {
			continue
		}
		var err error
		if s.sel.folder == meta.Trash {
			err = s.srv.cfg.Mailbox.Purge(s.ctx, e.ID)
		} else {
			err = s.srv.cfg.Mailbox.Delete(s.ctx, e.ID)
		}
		if err != nil {
			return imapErr(err, "expunging")
		}
		s.sel.index = slices.Delete(s.sel.index, i, i+1)
		if err := w.WriteExpunge(uint32(i + 1)); err != nil {
			return err
		}
	}
	return nil
}

// Move implements imapserver.SessionMove (RFC 6851) with
// mailbox.Service.Move: the message gets a new UID in the destination.
func (s *session) Move(w *imapserver.MoveWriter, set imap.NumSet, dest string) error {
	to := FolderOf(dest)
	before, err := s.srv.cfg.Mailbox.FolderState(s.ctx, string(to))
	if err != nil {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "no such mailbox"}
	}
	var moved []meta.IndexEntry
	err = s.each(set, func(_ uint32, e meta.IndexEntry) error {
		if _, err := s.srv.cfg.Mailbox.Move(s.ctx, e.ID, string(to)); err != nil {
			return imapErr(err, "moving")
		}
		moved = append(moved, e)
		return nil
	})
	if len(moved) > 0 {
		// The new UIDs are the destination's, from its UIDNEXT before.
		var src, dst imap.UIDSet
		after, _ := s.srv.cfg.Mailbox.FolderIndex(s.ctx, string(to), before.HighestModSeq)
		byID := map[string]uint32{}
		for _, a := range after {
			byID[a.ID] = a.UID
		}
		for _, m := range moved {
			if u, ok := byID[m.ID]; ok {
				src.AddNum(imap.UID(m.UID))
				dst.AddNum(imap.UID(u))
			}
		}
		if len(src) > 0 {
			if werr := w.WriteCopyData(&imap.CopyData{UIDValidity: before.UIDValidity, SourceUIDs: src, DestUIDs: dst}); werr != nil {
				return werr
			}
		}
		for i := len(s.sel.index) - 1; i >= 0; i-- {
			if slices.ContainsFunc(moved, func(m meta.IndexEntry) bool { return m.UID == s.sel.index[i].UID }) {
				s.sel.index = slices.Delete(s.sel.index, i, i+1)
				if werr := w.WriteExpunge(uint32(i + 1)); werr != nil {
					return werr
				}
			}
		}
	}
	return err
}

// Copy implements imapserver.Session: the mailbox holds a message in one
// folder only (a copy would be a second message of the same resources,
// which mailbox.Service does not make), so COPY is refused; MOVE works.
func (s *session) Copy(imap.NumSet, string) (*imap.CopyData, error) {
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "COPY is not supported: a message is in one mailbox; use MOVE"}
}

// Search implements imapserver.Session: flags, UIDs, sequence numbers and
// dates from the index; header and text criteria are refused for now.
func (s *session) Search(kind imapserver.NumKind, c *imap.SearchCriteria, _ *imap.SearchOptions) (*imap.SearchData, error) {
	if len(c.Header) > 0 || len(c.Body) > 0 || len(c.Text) > 0 || len(c.Or) > 0 || len(c.Not) > 0 {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "SEARCH on headers and text is not supported yet"}
	}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	for i, e := range s.sel.index {
		seq := uint32(i + 1)
		if !matches(c, seq, e, s.sel.index) {
			continue
		}
		seqs.AddNum(seq)
		uids.AddNum(imap.UID(e.UID))
	}
	d := &imap.SearchData{}
	if kind == imapserver.NumKindUID {
		d.All = uids
	} else {
		d.All = seqs
	}
	return d, nil
}

func matches(c *imap.SearchCriteria, seq uint32, e meta.IndexEntry, idx []meta.IndexEntry) bool {
	fl := flagsOf(e)
	for _, f := range c.Flag {
		if !slices.ContainsFunc(fl, func(g imap.Flag) bool { return strings.EqualFold(string(f), string(g)) }) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if slices.ContainsFunc(fl, func(g imap.Flag) bool { return strings.EqualFold(string(f), string(g)) }) {
			return false
		}
	}
	for _, set := range c.SeqNum {
		if !inSeqSet(set, seq, uint32(len(idx))) {
			return false
		}
	}
	for _, set := range c.UID {
		if !inUIDSet(set, e.UID, idx[len(idx)-1].UID) {
			return false
		}
	}
	day := e.Created.UTC().Truncate(24 * time.Hour)
	if !c.Since.IsZero() && day.Before(c.Since) {
		return false
	}
	if !c.Before.IsZero() && !day.Before(c.Before) {
		return false
	}
	if c.ModSeq != nil && e.ModSeq < int64(c.ModSeq.ModSeq) {
		return false
	}
	return true
}

func inSeqSet(set imap.SeqSet, n, max uint32) bool {
	return inRanges(n, max, len(set), func(i int) (uint32, uint32) { return set[i].Start, set[i].Stop })
}

func inUIDSet(set imap.UIDSet, n, max uint32) bool {
	return inRanges(n, max, len(set), func(i int) (uint32, uint32) { return uint32(set[i].Start), uint32(set[i].Stop) })
}

// inRanges says whether n is in one of the count ranges that at returns,
// where 0 ("*") is max and a range may be given high to low.
func inRanges(n, max uint32, count int, at func(int) (uint32, uint32)) bool {
	for i := range count {
		lo, hi := at(i)
		if lo == 0 {
			lo = max
		}
		if hi == 0 {
			hi = max
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if n >= lo && n <= hi {
			return true
		}
	}
	return false
}

// Append implements imapserver.Session: not yet (the SMTP-converted path
// of mailbox.Service.Import is the way it will take).
func (s *session) Append(string, imap.LiteralReader, *imap.AppendOptions) (*imap.AppendData, error) {
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "APPEND is not supported yet"}
}
