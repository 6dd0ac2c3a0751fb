package jmap

import (
	"encoding/json"
	"html"
	"io"
	"mime"
	"net/mail"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// snapshot is every message of the user, read once per request through
// mailbox.List of every folder: what queries, threads and blob lookups
// work on.
type snapshot struct {
	msgs   []mailbox.Message
	byID   map[string]int
	cursor string
}

func (c *call) all() (*snapshot, error) {
	if c.snap != nil {
		return c.snap, nil
	}
	fl, err := c.h.mb.Folders(c.ctx)
	if err != nil {
		return nil, err
	}
	s := &snapshot{byID: map[string]int{}}
	for i, f := range fl.Folders {
		page := ""
		for {
			l, err := c.h.mb.List(c.ctx, mailbox.ListOptions{Folder: f.Name, Page: page})
			if err != nil {
				return nil, err
			}
			if i == 0 && page == "" {
				s.cursor = l.Cursor
			}
			for _, m := range l.Messages {
				s.byID[m.ID] = len(s.msgs)
				s.msgs = append(s.msgs, m)
			}
			if page = l.NextPage; page == "" {
				break
			}
		}
	}
	c.snap = s
	return s, nil
}

// threadID is the Thread id of a message: a hash of its X-Thread-ID, or
// the message's own id for one without (a draft, mail that came without).
func threadID(m mailbox.Message) string {
	if m.ThreadID == "" {
		return "T" + m.ID
	}
	return "T" + shortHash([]byte(m.ThreadID))
}

// messageBlobID is the blobId of a whole message as RFC 5322 (Email.blobId):
// "M" and the message's id. A Content-ID is 43 characters of base64url and
// never starts with M followed by a message id's 25, so the two never meet
// (docs/PROTOCOL.md §14.3).
func messageBlobID(id string) string { return "M" + id }

// EmailAddress is an address of an Email (RFC 8621 §4.1.2.3).
type EmailAddress struct {
	Name  *string `json:"name"`
	Email string  `json:"email"`
}

func addrs(list ...string) []EmailAddress {
	out := []EmailAddress{}
	for _, s := range list {
		if s == "" {
			continue
		}
		as, err := mail.ParseAddressList(s)
		if err != nil {
			out = append(out, EmailAddress{Email: s})
			continue
		}
		for _, a := range as {
			e := EmailAddress{Email: a.Address}
			if a.Name != "" {
				n := a.Name
				e.Name = &n
			}
			out = append(out, e)
		}
	}
	return out
}

// BodyPart is an EmailBodyPart (RFC 8621 §4.1.4).
type BodyPart struct {
	PartID      *string    `json:"partId"`
	BlobID      *string    `json:"blobId"`
	Size        int64      `json:"size"`
	Headers     []Header   `json:"headers"`
	Name        *string    `json:"name"`
	Type        string     `json:"type"`
	Charset     *string    `json:"charset"`
	Disposition *string    `json:"disposition"`
	CID         *string    `json:"cid"`
	Language    []string   `json:"language"`
	Location    *string    `json:"location"`
	SubParts    []BodyPart `json:"subParts,omitempty"`
}

// Header is one header field (RFC 8621 §4.1.2).
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// BodyValue is an EmailBodyValue (RFC 8621 §4.1.4).
type BodyValue struct {
	Value             string `json:"value"`
	IsEncodingProblem bool   `json:"isEncodingProblem"`
	IsTruncated       bool   `json:"isTruncated"`
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// leafPart is a resource leaf as a body part; its partId is its position
// among the message's leaves (text, html, then attachments).
func leafPart(i int, a mailbox.Attachment) BodyPart {
	mt, params, _ := mime.ParseMediaType(a.ContentType)
	if mt == "" {
		mt = "application/octet-stream"
	}
	cs := params["charset"]
	if cs == "" && strings.HasPrefix(mt, "text/") {
		cs = "us-ascii"
	}
	pid, blob := strconv.Itoa(i+1), string(a.ContentID)
	return BodyPart{PartID: &pid, BlobID: &blob, Size: a.Size, Headers: []Header{}, Name: strp(a.Filename), Type: mt,
		Charset: strp(cs), Disposition: strp(a.Disposition), CID: strp(a.ContentID.ContentID())}
}

// leaves orders a message's resources: text, html, attachments.
func leaves(m mailbox.Message) (text, htmlPart *BodyPart, atts []BodyPart, all []BodyPart) {
	i := 0
	if m.Text != nil {
		p := leafPart(i, *m.Text)
		text, i = &p, i+1
		all = append(all, p)
	}
	if m.HTML != nil {
		p := leafPart(i, *m.HTML)
		htmlPart, i = &p, i+1
		all = append(all, p)
	}
	for _, a := range m.Attachments {
		p := leafPart(i, a)
		i++
		atts = append(atts, p)
		all = append(all, p)
	}
	return text, htmlPart, atts, all
}

func keywords(m mailbox.Message) map[string]bool {
	k := map[string]bool{}
	if m.Seen {
		k["$seen"] = true
	}
	if m.Folder == "drafts" {
		k["$draft"] = true
	}
	for _, w := range messageKeywords(m) {
		k[w] = true
	}
	return k
}

// emailArgs are Email/get's arguments (RFC 8621 §4.2).
type emailArgs struct {
	GetArgs
	BodyProperties      *[]string `json:"bodyProperties"`
	FetchTextBodyValues bool      `json:"fetchTextBodyValues"`
	FetchHTMLBodyValues bool      `json:"fetchHTMLBodyValues"`
	FetchAllBodyValues  bool      `json:"fetchAllBodyValues"`
	MaxBodyValueBytes   int       `json:"maxBodyValueBytes"`
}

var defaultEmailProps = []string{"id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt",
	"messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject", "sentAt",
	"hasAttachment", "preview", "bodyValues", "textBody", "htmlBody", "attachments"}

// readText reads up to n bytes of a leaf as text, cut at a rune boundary.
func (c *call) readText(id string, cid resource.ID, n int) (string, bool, error) {
	rc, _, err := c.h.mb.Download(c.ctx, id, cid)
	if err != nil {
		return "", false, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, int64(n)+1))
	if err != nil {
		return "", false, err
	}
	cut := len(b) > n
	if cut {
		b = b[:n]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	return string(b), cut, nil
}

func (c *call) email(m mailbox.Message, a emailArgs, props []string) (map[string]any, error) {
	want := map[string]bool{}
	for _, p := range props {
		want[p] = true
	}
	text, htmlPart, atts, all := leaves(m)
	e := map[string]any{"id": m.ID}
	var sentAt any
	if m.Date != nil {
		sentAt = m.Date.UTC().Format(time.RFC3339)
	}
	textBody, htmlBody := []BodyPart{}, []BodyPart{}
	if text != nil {
		textBody = append(textBody, *text)
	}
	if htmlPart != nil {
		htmlBody = append(htmlBody, *htmlPart)
	}
	if text == nil && htmlPart != nil {
		textBody = htmlBody
	}
	if htmlPart == nil && text != nil {
		htmlBody = textBody
	}
	var inReplyTo any
	if m.InReplyTo != "" {
		inReplyTo = []string{strings.Trim(m.InReplyTo, "<>")}
	}
	var to, cc, bcc any = addrs(m.To...), nil, nil
	if len(m.Cc) > 0 {
		cc = addrs(m.Cc...)
	}
	if len(m.Bcc) > 0 {
		bcc = addrs(m.Bcc...)
	}
	if len(m.To) == 0 {
		to = nil
	}
	vals := map[string]any{
		"blobId": messageBlobID(m.ID), "threadId": threadID(m), "mailboxIds": map[string]bool{mailboxID(m.Folder): true},
		"keywords": keywords(m), "size": m.Size, "receivedAt": m.Created.UTC().Format(time.RFC3339),
		"messageId": []string{strings.Trim(m.MessageID, "<>")}, "inReplyTo": inReplyTo, "references": nil,
		"sender": nil, "from": addrs(m.From), "to": to, "cc": cc, "bcc": bcc, "replyTo": nil, "subject": m.Subject,
		"sentAt": sentAt, "hasAttachment": len(atts) > 0,
		"textBody": bodyProps(textBody, a.BodyProperties), "htmlBody": bodyProps(htmlBody, a.BodyProperties),
		"attachments":   bodyProps(atts, a.BodyProperties),
		"bodyStructure": bodyProps([]BodyPart{{Type: "multipart/mixed", Headers: []Header{}, SubParts: all}}, a.BodyProperties)[0],
	}
	for k, v := range vals {
		if want[k] {
			e[k] = v
		}
	}
	if want["preview"] {
		e["preview"] = ""
		if text != nil {
			s, _, err := c.readText(m.ID, resource.ID(*text.BlobID), 1024)
			if err == nil {
				e["preview"] = preview(s)
			}
		}
	}
	if want["headers"] {
		e["headers"] = c.headers(m.ID)
	}
	if want["bodyValues"] {
		bv := map[string]BodyValue{}
		n := a.MaxBodyValueBytes
		if n <= 0 {
			n = maxBodyValue
		}
		fetch := func(p *BodyPart) {
			if p == nil || bv[*p.PartID] != (BodyValue{}) {
				return
			}
			s, cut, err := c.readText(m.ID, resource.ID(*p.BlobID), n)
			bv[*p.PartID] = BodyValue{Value: s, IsTruncated: cut, IsEncodingProblem: err != nil}
		}
		if a.FetchTextBodyValues || a.FetchAllBodyValues {
			fetch(text)
			if text == nil {
				fetch(htmlPart)
			}
		}
		if a.FetchHTMLBodyValues || a.FetchAllBodyValues {
			fetch(htmlPart)
			if htmlPart == nil {
				fetch(text)
			}
		}
		e["bodyValues"] = bv
	}
	return e, nil
}

// headers are the message's top-level headers as the placeholder has them.
func (c *call) headers(id string) []Header {
	full, err := c.h.mb.Get(c.ctx, id)
	if err != nil {
		return []Header{}
	}
	pm, err := placeholder.Parse(full.Placeholder, placeholder.Limits{})
	if err != nil {
		return []Header{}
	}
	var raw struct {
		Headers map[string]json.RawMessage `json:"headers"`
	}
	json.Unmarshal(full.Placeholder, &raw)
	out := []Header{}
	names := make([]string, 0, len(raw.Headers))
	for k := range raw.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		out = append(out, Header{Name: k, Value: " " + pm.Header.Get(k).String()})
	}
	return out
}

func preview(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > 256 {
		r := []rune(s)
		s = string(r[:256])
	}
	return s
}

// bodyProps keeps the requested properties of body parts.
func bodyProps(ps []BodyPart, props *[]string) []any {
	out := make([]any, len(ps))
	for i, p := range ps {
		b, _ := json.Marshal(p)
		var m map[string]any
		json.Unmarshal(b, &m)
		if sub, ok := m["subParts"]; ok && sub != nil {
			m["subParts"] = bodyProps(p.SubParts, props)
		}
		if props != nil {
			keep := map[string]any{}
			for _, k := range *props {
				if v, ok := m[k]; ok {
					keep[k] = v
				}
			}
			if sub, ok := m["subParts"]; ok {
				keep["subParts"] = sub
			}
			m = keep
		}
		out[i] = m
	}
	return out
}

func (c *call) emailGet(args json.RawMessage) (any, error) {
	var a emailArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if err := c.checkGet(&a.GetArgs); err != nil {
		return nil, err
	}
	props := defaultEmailProps
	if a.Properties != nil {
		props = *a.Properties
	}
	st, err := c.state()
	if err != nil {
		return nil, err
	}
	out := GetResponse{AccountID: c.acct, State: st, List: []any{}, NotFound: []string{}}
	var ids []string
	if a.IDs == nil {
		s, err := c.all()
		if err != nil {
			return nil, err
		}
		for i, m := range s.msgs {
			if i >= c.h.lim.MaxObjectsInGet {
				break
			}
			ids = append(ids, m.ID)
		}
	} else {
		ids = *a.IDs
	}
	for _, id := range ids {
		m, err := c.h.mb.Get(c.ctx, id)
		if err != nil {
			out.NotFound = append(out.NotFound, id)
			continue
		}
		e, err := c.email(m, a, props)
		if err != nil {
			return nil, err
		}
		out.List = append(out.List, e)
	}
	return out, nil
}

func (c *call) emailChanges(args json.RawMessage) (any, error) {
	return c.changes(args, func(ch mailbox.Change) string { return ch.ID })
}

func (c *call) threadChanges(args json.RawMessage) (any, error) {
	return c.changes(args, func(ch mailbox.Change) string {
		if ch.Message != nil {
			return threadID(*ch.Message)
		}
		return ""
	})
}

// changes turns the change log into created/updated/destroyed ids: a move
// (deleted in one folder and created in another in one commit) is an
// update; an id first created and then deleted since the state is left out.
func (c *call) changes(args json.RawMessage, idOf func(mailbox.Change) string) (any, error) {
	var a ChangesArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	limit, err := maxChanges(a.MaxChanges)
	if err != nil {
		return nil, err
	}
	chs, err := c.feed(a.SinceState, limit)
	if err != nil {
		return nil, err
	}
	type st struct{ created, deleted, updated bool }
	seen := map[string]*st{}
	var order []string
	for _, ch := range chs.Changes {
		id := idOf(ch)
		if id == "" {
			continue
		}
		s := seen[id]
		if s == nil {
			s = &st{}
			seen[id] = s
			order = append(order, id)
		}
		switch ch.Kind {
		case "created":
			if s.deleted {
				s.deleted, s.updated = false, true
			} else {
				s.created = true
			}
		case "deleted":
			s.deleted = true
		default:
			s.updated = true
		}
	}
	out := ChangesResponse{AccountID: c.acct, OldState: a.SinceState, NewState: chs.Cursor, HasMoreChanges: chs.More,
		Created: []string{}, Updated: []string{}, Destroyed: []string{}}
	for _, id := range order {
		s := seen[id]
		switch {
		case s.created && s.deleted:
		case s.created:
			out.Created = append(out.Created, id)
		case s.deleted:
			out.Destroyed = append(out.Destroyed, id)
		default:
			out.Updated = append(out.Updated, id)
		}
	}
	return out, nil
}

func (c *call) threadGet(args json.RawMessage) (any, error) {
	var a GetArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if err := c.checkGet(&a); err != nil {
		return nil, err
	}
	s, err := c.all()
	if err != nil {
		return nil, err
	}
	threads := map[string][]mailbox.Message{}
	var order []string
	for _, m := range s.msgs {
		t := threadID(m)
		if _, ok := threads[t]; !ok {
			order = append(order, t)
		}
		threads[t] = append(threads[t], m)
	}
	out := GetResponse{AccountID: c.acct, State: s.cursor, List: []any{}, NotFound: []string{}}
	ids := order
	if a.IDs != nil {
		ids = *a.IDs
	}
	for _, id := range ids {
		ms, ok := threads[id]
		if !ok {
			out.NotFound = append(out.NotFound, id)
			continue
		}
		sort.SliceStable(ms, func(i, j int) bool { return ms[i].Created.Before(ms[j].Created) })
		eids := make([]string, len(ms))
		for i, m := range ms {
			eids[i] = m.ID
		}
		out.List = append(out.List, pick(map[string]any{"id": id, "emailIds": eids}, a.Properties))
	}
	return out, nil
}

// snippetGet answers SearchSnippet/get (RFC 8621 §5.1): the subject and
// the preview with the filter's words marked.
func (c *call) snippetGet(args json.RawMessage) (any, error) {
	var a struct {
		AccountID string          `json:"accountId"`
		Filter    json.RawMessage `json:"filter"`
		EmailIDs  []string        `json:"emailIds"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if len(a.EmailIDs) > c.h.lim.MaxObjectsInGet {
		return nil, merr("requestTooLarge", "at most %d emailIds", c.h.lim.MaxObjectsInGet)
	}
	f, err := parseFilter(a.Filter)
	if err != nil {
		return nil, err
	}
	words := f.words()
	list := []any{}
	notFound := []string{}
	for _, id := range a.EmailIDs {
		id = c.resolveID(id)
		m, err := c.h.mb.Get(c.ctx, id)
		if err != nil {
			notFound = append(notFound, id)
			continue
		}
		var pv any
		if m.Text != nil {
			if s, _, err := c.readText(m.ID, m.Text.ContentID, 64<<10); err == nil {
				pv = markSnippet(s, words, true)
			}
		}
		list = append(list, map[string]any{"emailId": id, "subject": markSnippet(m.Subject, words, false), "preview": pv})
	}
	var nf any = notFound
	if len(notFound) == 0 {
		nf = nil
	}
	return map[string]any{"accountId": c.acct, "list": list, "notFound": nf}, nil
}

// markSnippet escapes s as HTML and wraps the words in <mark>; for a
// preview, it keeps about 255 characters around the first match.
func markSnippet(s string, words []string, cut bool) any {
	low := strings.ToLower(s)
	first := -1
	for _, w := range words {
		if i := strings.Index(low, w); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	if first < 0 {
		return nil
	}
	if cut {
		start := max(first-60, 0)
		for start > 0 && !utf8.RuneStart(s[start]) {
			start--
		}
		end := min(start+255, len(s))
		for end < len(s) && !utf8.RuneStart(s[end]) {
			end++
		}
		s, low = strings.Join(strings.Fields(s[start:end]), " "), ""
		low = strings.ToLower(s)
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		hit := ""
		for _, w := range words {
			if w != "" && strings.HasPrefix(low[i:], w) && len(low) == len(s) {
				hit = s[i : i+len(w)]
				break
			}
		}
		if hit != "" {
			b.WriteString("<mark>" + html.EscapeString(hit) + "</mark>")
			i += len(hit)
			continue
		}
		_, n := utf8.DecodeRuneInString(s[i:])
		b.WriteString(html.EscapeString(s[i : i+n]))
		i += n
	}
	return b.String()
}
