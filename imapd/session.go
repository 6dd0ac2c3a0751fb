package imapd

import (
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
)

// folders is the user's folders, each with its IMAP name.
func (s *session) folders() ([]mailbox.FolderInfo, error) {
	l, err := s.srv.cfg.Mailbox.Folders(s.ctx)
	if err != nil {
		return nil, imapErr(err, "listing the folders")
	}
	return l.Folders, nil
}

// Namespace implements imapserver.SessionNamespace: one personal
// namespace, flat ("/" is not allowed in folder names, so there is no
// hierarchy), no shared ones.
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: '/'}}}, nil
}

// List implements imapserver.Session, with SPECIAL-USE attributes and
// LIST-STATUS.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter (RFC 9051 §6.3.9).
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: '/'})
	}
	fs, err := s.folders()
	if err != nil {
		return err
	}
	for _, f := range fs {
		name := MailboxName(meta.Folder(f.Name))
		if !matchAny(name, ref, patterns) {
			continue
		}
		attrs := []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}
		su := specialUse(meta.Folder(f.Name))
		if su != "" {
			attrs = append(attrs, su)
		}
		if options != nil && options.SelectSpecialUse && su == "" {
			continue
		}
		if options != nil && options.SelectSubscribed {
			attrs = append(attrs, imap.MailboxAttrSubscribed)
		}
		d := &imap.ListData{Attrs: attrs, Delim: '/', Mailbox: name}
		if options != nil && options.ReturnStatus != nil {
			d.Status = statusOf(f, name, options.ReturnStatus)
		}
		if err := w.WriteList(d); err != nil {
			return err
		}
	}
	return nil
}

func matchAny(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if imapserver.MatchList(name, '/', ref, p) {
			return true
		}
	}
	return false
}

func statusOf(f mailbox.FolderInfo, name string, o *imap.StatusOptions) *imap.StatusData {
	d := &imap.StatusData{Mailbox: name}
	total, unseen := uint32(f.Total), uint32(f.Unseen)
	if o.NumMessages {
		d.NumMessages = &total
	}
	if o.NumUnseen {
		d.NumUnseen = &unseen
	}
	if o.NumRecent {
		zero := uint32(0)
		d.NumRecent = &zero
	}
	return d
}

// Status implements imapserver.Session: MESSAGES, UNSEEN (and RECENT, 0)
// from the mailbox's folder counts.
func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	fs, err := s.folders()
	if err != nil {
		return nil, err
	}
	want := FolderOf(name)
	for _, f := range fs {
		if meta.Folder(f.Name) == want {
			return statusOf(f, MailboxName(want), options), nil
		}
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "no such mailbox"}
}

// Create implements imapserver.Session: a user folder
// (mailbox.Service.CreateFolder and its naming rules).
func (s *session) Create(name string, _ *imap.CreateOptions) error {
	if FolderOf(name).System() {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "that is a system mailbox"}
	}
	if _, err := s.srv.cfg.Mailbox.CreateFolder(s.ctx, name); err != nil {
		return imapErr(err, "creating the mailbox")
	}
	return nil
}

// Delete implements imapserver.Session: an empty user folder
// (mailbox.Service.DeleteFolder refuses a system one or one with mail).
func (s *session) Delete(name string) error {
	if err := s.srv.cfg.Mailbox.DeleteFolder(s.ctx, string(FolderOf(name))); err != nil {
		return imapErr(err, "deleting the mailbox")
	}
	return nil
}

// Rename implements imapserver.Session: the mailbox service has no rename
// of a folder, so it is refused.
func (s *session) Rename(_, _ string, _ *imap.RenameOptions) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "renaming a mailbox is not supported"}
}

// Subscribe and Unsubscribe implement imapserver.Session: every folder is
// always subscribed.
func (s *session) Subscribe(string) error { return nil }

// Unsubscribe implements imapserver.Session (see Subscribe).
func (s *session) Unsubscribe(string) error { return nil }
