package mailbox

import (
	"mime"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
)

// draft is a Placeholder Message being created, edited or sent.
type draft struct {
	m       *placeholder.Message
	from    string
	subject string
}

// parseDraft reads a client's document: the format rules of package
// placeholder, then the mailbox's own: no server-owned header (except the
// draft's own Message-ID echoed back unchanged), From absent (the server
// fills in the user) or the user's own address, recipient headers that parse.
func (s *Service) parseDraft(p auth.Principal, doc []byte, ownMessageID string) (*draft, error) {
	m, err := placeholder.Parse(doc, placeholder.DefaultLimits())
	if err != nil {
		return nil, err
	}
	if v, ok := m.Header.Lookup(placeholder.HMessageID); ok && ownMessageID != "" && !v.IsList() && v.String() == ownMessageID {
		m.Header.Del(placeholder.HMessageID)
	}
	if err := placeholder.CheckClientHeader(m.Header); err != nil {
		return nil, err
	}
	if v, ok := m.Header.Lookup(placeholder.HFrom); ok {
		addrs, err := mail.ParseAddressList(v.String())
		if err != nil || len(addrs) != 1 {
			return nil, errs.E(errs.Invalid, "bad_address", "From must be exactly one address")
		}
		if norm, err := account.NormalizeAddress(addrs[0].Address); err != nil || norm != p.Address {
			return nil, errs.E(errs.Forbidden, "from_not_yours", "you may send only as %s", p.Address)
		}
	} else {
		m.Header.SetString(placeholder.HFrom, p.Address)
	}
	if _, err := placeholder.RecipientsDigest(m.Header); err != nil {
		return nil, err
	}
	if _, err := m.Leaves(); err != nil {
		return nil, err
	}
	return newDraft(m), nil
}

func newDraft(m *placeholder.Message) *draft {
	return &draft{m: m, from: m.Header.Get(placeholder.HFrom).String(), subject: m.Header.Get(placeholder.HSubject).String()}
}

// parseStored reads a document this server wrote.
func parseStored(doc []byte) (*draft, error) {
	m, err := placeholder.Parse(doc, placeholder.DefaultLimits())
	if err != nil {
		return nil, err
	}
	return newDraft(m), nil
}

func (d *draft) setMessageID(id string) { d.m.Header.SetString(placeholder.HMessageID, id) }

func (d *draft) canonical() []byte { return d.m.Canonical() }

func (d *draft) leaves() []Attachment {
	ls, _ := d.m.Leaves() // checked by parseDraft
	out := make([]Attachment, 0, len(ls))
	for _, l := range ls {
		out = append(out, Attachment{ContentID: l.ID, Size: l.Size, ContentType: l.ContentType, Disposition: l.Disposition, Filename: l.Filename})
	}
	return out
}

func (d *draft) inReplyTo() string {
	v := d.m.Header.Get(placeholder.HInReplyTo).String()
	if f := strings.Fields(v); len(f) > 0 {
		return f[0]
	}
	return ""
}

// addresses parses one address header ("" when absent).
func addresses(m *placeholder.Message, name string) ([]*mail.Address, error) {
	v, ok := m.Header.Lookup(name)
	if !ok {
		return nil, nil
	}
	l, err := mail.ParseAddressList(v.String())
	if err != nil {
		return nil, errs.E(errs.Invalid, "bad_address", "header %s: %v", name, err)
	}
	return l, nil
}

// recipients returns the addresses of To, Cc and Bcc.
func (d *draft) recipients() (to, cc, bcc []*mail.Address, err error) {
	var lists [3][]*mail.Address
	for i, name := range []string{placeholder.HTo, placeholder.HCc, placeholder.HBcc} {
		if lists[i], err = addresses(d.m, name); err != nil {
			return nil, nil, nil, err
		}
	}
	return lists[0], lists[1], lists[2], nil
}

// seal adds what a send adds to the headers every copy shares: Date,
// X-Thread-ID and Body-Digest (docs/PROTOCOL.md §6).
func (d *draft) seal(now time.Time, thread string) error {
	h := &d.m.Header
	h.SetString(placeholder.HDate, placeholder.FormatDate(now))
	h.SetString(placeholder.HThreadID, thread)
	h.SetString(placeholder.HBodyDigest, placeholder.BodyDigest(d.m))
	return nil
}

// copyFor returns the canonical document of one copy of a sealed message
// with its own Recipients-Digest. keepBcc keeps every Bcc (the sender's
// copy); otherwise Bcc is removed, or replaced by bcc when it is not empty
// (a Bcc recipient's copy names only them).
func (d *draft) copyFor(bcc []string, keepBcc bool) ([]byte, error) {
	c := d.m.Clone()
	if !keepBcc {
		c.Header.Del(placeholder.HBcc)
		if len(bcc) > 0 {
			c.Header.SetString(placeholder.HBcc, strings.Join(bcc, ", "))
		}
	}
	rd, err := placeholder.RecipientsDigest(c.Header)
	if err != nil {
		return nil, err
	}
	c.Header.SetString(placeholder.HRecipientsDigest, rd)
	return c.Canonical(), nil
}

// view turns a stored message into its API form; full includes the
// Placeholder Message.
func (s *Service) view(row meta.Message, full bool) Message {
	v := Message{
		ID: row.ID, MessageID: row.MessageID, ThreadID: row.ThreadID, Folder: string(row.Folder),
		Status: string(row.Status), StatusReason: row.StatusReason, Seen: row.Seen, From: row.From,
		Subject: row.Subject, Created: row.Created, Updated: row.Updated, To: []string{}, Attachments: []Attachment{},
		Keywords: slices.Clone(row.Keywords),
	}
	if !row.Date.IsZero() {
		d := row.Date
		v.Date = &d
	}
	for _, r := range row.Refs {
		v.Size += r.Size
	}
	d, err := parseStored(row.Placeholder)
	if err != nil {
		s.log.Error("stored message unreadable", "id", row.ID, "msgid", row.MessageID, "err", err)
		return v
	}
	for _, f := range []struct {
		name string
		dst  *[]string
	}{{placeholder.HTo, &v.To}, {placeholder.HCc, &v.Cc}, {placeholder.HBcc, &v.Bcc}} {
		as, _ := addresses(d.m, f.name)
		for _, a := range as {
			*f.dst = append(*f.dst, formatAddress(a))
			v.rcpts = append(v.rcpts, a.Address)
		}
	}
	v.InReplyTo = d.inReplyTo()
	if h := d.m.Header; h.Has(placeholder.HForwardedFrom) {
		v.Forward = &ForwardInfo{From: h.Get(placeholder.HForwardedFrom).String(),
			To: federation.Addresses(h.Get(placeholder.HForwardedTo)), ID: h.Get(placeholder.HForwardedMessageID).String(),
			Note: h.Get(placeholder.HForwardedNote).String()}
	}
	v.all = d.leaves()
	for i := range v.all {
		a := &v.all[i]
		mt, _, _ := mime.ParseMediaType(a.ContentType)
		switch {
		case a.Disposition == "attachment" || a.Filename != "":
			v.Attachments = append(v.Attachments, *a)
		case mt == "text/plain" && v.Text == nil:
			v.Text = a
		case mt == "text/html" && v.HTML == nil:
			v.HTML = a
		default:
			v.Attachments = append(v.Attachments, *a)
		}
	}
	if full {
		v.Placeholder = row.Placeholder
	}
	return v
}

// formatAddress writes "Name <addr>", quoting the name only when RFC 5322
// needs it (anything but atoms and spaces), or the bare addr.
func formatAddress(a *mail.Address) string {
	if a.Name == "" {
		return a.Address
	}
	for _, r := range a.Name {
		if !(r == ' ' || r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r))) {
			return a.String()
		}
	}
	if strings.TrimSpace(a.Name) != a.Name || strings.Contains(a.Name, "  ") {
		return a.String()
	}
	return a.Name + " <" + a.Address + ">"
}
