package jmap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

func (c *call) emailSet(args json.RawMessage) (any, error) {
	var a SetArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	old, err := c.state()
	if err != nil {
		return nil, err
	}
	if err := c.checkSet(&a, old); err != nil {
		return nil, err
	}
	out := newSetResponse(c.acct, old)
	for cid, raw := range a.Create {
		m, err := c.createDraft(raw)
		if err != nil {
			out.NotCreated[cid] = toSetError(err)
			continue
		}
		c.created[cid] = m.ID
		out.Created[cid] = map[string]any{"id": m.ID, "blobId": messageBlobID(m.ID), "threadId": threadID(m), "size": m.Size}
	}
	for id, raw := range a.Update {
		id = c.resolveID(id)
		if err := c.updateEmail(id, raw); err != nil {
			out.NotUpdated[id] = toSetError(err)
			continue
		}
		out.Updated[id] = nil
	}
	for _, id := range a.Destroy {
		id = c.resolveID(id)
		if err := c.destroyEmail(id); err != nil {
			out.NotDestroyed[id] = toSetError(err)
			continue
		}
		out.Destroyed = append(out.Destroyed, id)
	}
	if out.NewState, err = c.state(); err != nil {
		return nil, err
	}
	return out, nil
}

// destroyEmail removes a message for good: to trash first when it is
// elsewhere (a draft is purged where it is).
func (c *call) destroyEmail(id string) error {
	m, err := c.h.mb.Get(c.ctx, id)
	if err != nil {
		return err
	}
	if m.Folder != "trash" && m.Folder != "drafts" {
		if err := c.h.mb.Delete(c.ctx, id); err != nil {
			return err
		}
	}
	return c.h.mb.Purge(c.ctx, id)
}

// updateEmail applies a patch of keywords and mailboxIds (RFC 8621 §4.6);
// every other property of an Email is immutable. The patch is checked whole
// before anything changes.
func (c *call) updateEmail(id string, raw json.RawMessage) error {
	var patch map[string]json.RawMessage
	if err := json.Unmarshal(raw, &patch); err != nil {
		return setErr("invalidPatch", "the patch is not an object")
	}
	m, err := c.h.mb.Get(c.ctx, id)
	if err != nil {
		return err
	}
	kw := keywords(m)
	boxes := map[string]bool{mailboxID(m.Folder): true}
	for k, v := range patch {
		var b *bool
		if string(v) != "null" {
			var x bool
			if err := json.Unmarshal(v, &x); err != nil && !strings.HasPrefix(k, "keywords") && !strings.HasPrefix(k, "mailboxIds") {
				return setErr("invalidPatch", "bad value of "+k)
			} else if err == nil {
				b = &x
			}
		}
		switch {
		case k == "keywords":
			var all map[string]bool
			if err := json.Unmarshal(v, &all); err != nil {
				return setErr("invalidProperties", "keywords is a map of keyword to true", "keywords")
			}
			kw = map[string]bool{}
			for w, on := range all {
				if on {
					kw[strings.ToLower(w)] = true
				}
			}
		case strings.HasPrefix(k, "keywords/"):
			w := strings.ToLower(unescapePointer(strings.TrimPrefix(k, "keywords/")))
			if b != nil && *b {
				kw[w] = true
			} else if b == nil {
				delete(kw, w)
			} else {
				return setErr("invalidPatch", "a keyword is set to true or null", "keywords")
			}
		case k == "mailboxIds":
			var all map[string]bool
			if err := json.Unmarshal(v, &all); err != nil {
				return setErr("invalidProperties", "mailboxIds is a map of id to true", "mailboxIds")
			}
			boxes = all
		case strings.HasPrefix(k, "mailboxIds/"):
			mb := c.resolveID(unescapePointer(strings.TrimPrefix(k, "mailboxIds/")))
			if b != nil && *b {
				boxes[mb] = true
			} else {
				delete(boxes, mb)
			}
		default:
			return setErr("invalidProperties", k+" cannot be changed", k)
		}
	}
	if len(boxes) != 1 {
		return setErr("invalidProperties", "an email is in exactly one mailbox", "mailboxIds")
	}
	var target string
	for id := range boxes {
		target = c.resolveID(id)
	}
	folder, ok, err := c.folderOf(target)
	if err != nil {
		return err
	}
	if !ok {
		return setErr("invalidProperties", "no mailbox "+target, "mailboxIds")
	}
	for w := range kw {
		if !validKeyword(w) {
			return setErr("invalidProperties", fmt.Sprintf("keyword %q is not 1 to 255 of the characters RFC 8621 §4.1.1 allows", w), "keywords")
		}
	}
	draft := m.Folder == "drafts"
	if kw["$draft"] != draft {
		return setErr("invalidProperties", "$draft is the drafts folder's: create a draft, or send it", "keywords")
	}
	// Keywords first, then the move: a refused move leaves the keywords as
	// they were only if they did not change; the move is checked above.
	seen := kw["$seen"]
	cur := keywords(m)
	var add, remove []string
	for w := range kw {
		if !cur[w] && w != "$seen" && w != "$draft" {
			add = append(add, w)
		}
	}
	for w := range cur {
		if !kw[w] && w != "$seen" && w != "$draft" {
			remove = append(remove, w)
		}
	}
	sort.Strings(add)
	sort.Strings(remove)
	if folder != m.Folder {
		if _, err := c.h.mb.Move(c.ctx, id, folder); err != nil {
			return err
		}
	}
	if seen != m.Seen || len(add) > 0 || len(remove) > 0 {
		if _, err := c.h.mb.SetKeywords(c.ctx, id, &seen, add, remove); err != nil {
			return err
		}
	}
	return nil
}

func unescapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
}

// validKeyword: 1 to 255 ASCII characters from %x21 to %x7e but ( ) { ] % * " \
// (RFC 8621 §4.1.1, IMAP's atom).
func validKeyword(w string) bool {
	if w == "" || len(w) > 255 {
		return false
	}
	for i := 0; i < len(w); i++ {
		if w[i] < 0x21 || w[i] > 0x7e || strings.IndexByte(`(){]%*"\`, w[i]) >= 0 {
			return false
		}
	}
	return true
}

// newEmail is what Email/set create reads (RFC 8621 §4.6): a draft.
type newEmail struct {
	MailboxIDs    map[string]bool      `json:"mailboxIds"`
	Keywords      map[string]bool      `json:"keywords"`
	From          []EmailAddress       `json:"from"`
	To            []EmailAddress       `json:"to"`
	Cc            []EmailAddress       `json:"cc"`
	Bcc           []EmailAddress       `json:"bcc"`
	Subject       string               `json:"subject"`
	InReplyTo     []string             `json:"inReplyTo"`
	References    []string             `json:"references"`
	BodyValues    map[string]BodyValue `json:"bodyValues"`
	TextBody      []newPart            `json:"textBody"`
	HTMLBody      []newPart            `json:"htmlBody"`
	Attachments   []newPart            `json:"attachments"`
	ReceivedAt    *string              `json:"receivedAt"`
	SentAt        *string              `json:"sentAt"`
	MessageID     []string             `json:"messageId"`
	ReplyTo       []EmailAddress       `json:"replyTo"`
	BodyStructure json.RawMessage      `json:"bodyStructure"`
	Headers       json.RawMessage      `json:"headers"`
}

type newPart struct {
	PartID      string  `json:"partId"`
	BlobID      string  `json:"blobId"`
	Type        string  `json:"type"`
	Name        *string `json:"name"`
	Disposition *string `json:"disposition"`
	Charset     *string `json:"charset"`
	CID         *string `json:"cid"`
	Size        *int64  `json:"size"`
}

func formatAddrs(as []EmailAddress) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Email
		if a.Name != nil && *a.Name != "" {
			out[i] = (&mailAddress{*a.Name, a.Email}).String()
		}
	}
	return out
}

// createDraft makes a draft of a JMAP Email: every body value is uploaded
// as a resource, every attachment names a blob the user holds.
func (c *call) createDraft(raw json.RawMessage) (mailbox.Message, error) {
	var e newEmail
	if err := decodeArgs(raw, &e); err != nil {
		return mailbox.Message{}, setErr("invalidProperties", err.(*MethodError).Description)
	}
	if len(e.MailboxIDs) != 1 || !e.MailboxIDs["drafts"] && !e.MailboxIDs[c.resolveID("drafts")] {
		return mailbox.Message{}, setErr("invalidProperties", "a new email is a draft: mailboxIds must be {\"drafts\": true}", "mailboxIds")
	}
	for _, bad := range []struct {
		name string
		set  bool
	}{{"bodyStructure", len(e.BodyStructure) > 0}, {"headers", len(e.Headers) > 0}, {"messageId", e.MessageID != nil},
		{"sentAt", e.SentAt != nil}, {"references", e.References != nil}, {"replyTo", e.ReplyTo != nil}} {
		if bad.set {
			return mailbox.Message{}, setErr("invalidProperties", bad.name+" is set by the server or not supported in a new email", bad.name)
		}
	}
	from := ""
	if len(e.From) > 1 {
		return mailbox.Message{}, setErr("invalidProperties", "one From address, yours", "from")
	} else if len(e.From) == 1 {
		from = formatAddrs(e.From)[0]
	}
	m := placeholder.New(from, formatAddrs(e.To), formatAddrs(e.Cc), formatAddrs(e.Bcc), e.Subject)
	if from == "" {
		m.Header.Del(placeholder.HFrom)
	}
	if len(e.InReplyTo) > 0 {
		m.Header.SetString(placeholder.HInReplyTo, "<"+strings.Trim(e.InReplyTo[0], "<>")+">")
	}
	var bodies []placeholder.Part
	for _, group := range []struct {
		parts []newPart
		ct    string
	}{{e.TextBody, "text/plain"}, {e.HTMLBody, "text/html"}} {
		if len(group.parts) > 1 {
			return mailbox.Message{}, setErr("invalidProperties", "one text and one html body", "textBody")
		}
		for _, p := range group.parts {
			v, ok := e.BodyValues[p.PartID]
			if !ok {
				return mailbox.Message{}, setErr("invalidProperties", "no bodyValue "+p.PartID, "bodyValues")
			}
			up, err := c.h.mb.Upload(c.ctx, bytes.NewReader([]byte(v.Value)), mailbox.UploadOptions{Size: int64(len(v.Value))})
			if err != nil {
				return mailbox.Message{}, err
			}
			leaf, err := placeholder.NewLeaf(up.ContentID, up.Size, group.ct+"; charset=UTF-8", "inline", "")
			if err != nil {
				return mailbox.Message{}, setErr("invalidProperties", err.Error(), "textBody")
			}
			bodies = append(bodies, leaf)
		}
	}
	if len(bodies) > 0 {
		m.Parts = append(m.Parts, placeholder.Alternative(bodies...))
	}
	for _, p := range e.Attachments {
		cid, err := resource.ParseID(p.BlobID)
		if err != nil {
			return mailbox.Message{}, setErr("invalidProperties", "attachments name uploaded blobs", "attachments")
		}
		st, err := c.h.mb.Stat(c.ctx, cid)
		if err != nil {
			return mailbox.Message{}, setErr("blobNotFound", "no blob "+p.BlobID, "attachments")
		}
		ct := p.Type
		if ct == "" {
			ct = "application/octet-stream"
		}
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		disp := "attachment"
		if p.Disposition != nil && *p.Disposition == "inline" {
			disp = "inline"
		}
		leaf, err := placeholder.NewLeaf(cid, st.Size, ct, disp, name)
		if err != nil {
			return mailbox.Message{}, setErr("invalidProperties", err.Error(), "attachments")
		}
		m.Parts = append(m.Parts, leaf)
	}
	if len(m.Parts) == 0 {
		up, err := c.h.mb.Upload(c.ctx, bytes.NewReader(nil), mailbox.UploadOptions{Size: 0})
		if err != nil {
			return mailbox.Message{}, err
		}
		leaf, _ := placeholder.NewLeaf(up.ContentID, 0, "text/plain; charset=UTF-8", "inline", "")
		m.Parts = append(m.Parts, leaf)
	}
	msg, err := c.h.mb.CreateDraft(c.ctx, m.Canonical())
	if err != nil {
		return mailbox.Message{}, err
	}
	var add []string
	for w, on := range e.Keywords {
		w = strings.ToLower(w)
		if on && w != "$draft" && w != "$seen" && validKeyword(w) {
			add = append(add, w)
		}
	}
	seen := e.Keywords["$seen"]
	if len(add) > 0 || seen {
		sort.Strings(add)
		if msg, err = c.h.mb.SetKeywords(c.ctx, msg.ID, &seen, add, nil); err != nil {
			return mailbox.Message{}, err
		}
	}
	return msg, nil
}

func (c *call) emailCopy(args json.RawMessage) (any, error) {
	var a struct {
		FromAccountID string `json:"fromAccountId"`
	}
	json.Unmarshal(args, &a)
	if a.FromAccountID == c.acct {
		return nil, merr("invalidArguments", "fromAccountId must differ from accountId: there is one account per user")
	}
	return nil, merr("fromAccountNotFound", "no account %q", a.FromAccountID)
}

func (c *call) emailImport(json.RawMessage) (any, error) {
	return nil, merr("forbidden", "Email/import is not implemented yet: deliver by SMTP or pullmail import")
}

func (c *call) emailParse(json.RawMessage) (any, error) {
	return nil, merr("forbidden", "Email/parse is not implemented yet")
}

// Identity is the user's one identity (RFC 8621 §6): their address.
func (c *call) identity() map[string]any {
	return map[string]any{"id": "me", "name": "", "email": c.p.Address, "replyTo": nil, "bcc": nil,
		"textSignature": "", "htmlSignature": "", "mayDelete": false}
}

func (c *call) identityGet(args json.RawMessage) (any, error) {
	var a GetArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	out := GetResponse{AccountID: c.acct, State: "1", List: []any{}, NotFound: []string{}}
	if a.IDs == nil || len(*a.IDs) == 0 && false {
		out.List = append(out.List, pick(c.identity(), a.Properties))
		return out, nil
	}
	for _, id := range *a.IDs {
		if id == "me" {
			out.List = append(out.List, pick(c.identity(), a.Properties))
		} else {
			out.NotFound = append(out.NotFound, id)
		}
	}
	return out, nil
}

func (c *call) identityChanges(args json.RawMessage) (any, error) {
	var a ChangesArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.SinceState != "1" {
		return nil, merr("cannotCalculateChanges", "unknown state")
	}
	return ChangesResponse{AccountID: c.acct, OldState: "1", NewState: "1", Created: []string{}, Updated: []string{}, Destroyed: []string{}}, nil
}

// submission is an EmailSubmission (RFC 8621 §7) of a sent message: its id
// is the sent message's.
func submission(m mailbox.Message) map[string]any {
	ds := map[string]any{}
	rcpts := []map[string]any{}
	for _, d := range m.Deliveries {
		st := map[string]string{"queued": "queued", "deferred": "queued", "delivered": "yes", "failed": "no"}[d.State]
		if st == "" {
			st = "unknown"
		}
		ds[d.Recipient] = map[string]any{"smtpReply": d.Reply, "delivered": st, "displayed": "unknown"}
		rcpts = append(rcpts, map[string]any{"email": d.Recipient, "parameters": nil})
	}
	var sendAt any
	if m.Date != nil {
		sendAt = m.Date.UTC().Format(time.RFC3339)
	}
	return map[string]any{"id": m.ID, "identityId": "me", "emailId": m.ID, "threadId": threadID(m),
		"envelope": map[string]any{"mailFrom": map[string]any{"email": m.From, "parameters": nil}, "rcptTo": rcpts},
		"sendAt":   sendAt, "undoStatus": "final", "deliveryStatus": ds, "dsnBlobIds": []string{}, "mdnBlobIds": []string{}}
}

func (c *call) submissionGet(args json.RawMessage) (any, error) {
	var a GetArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if err := c.checkGet(&a); err != nil {
		return nil, err
	}
	st, err := c.state()
	if err != nil {
		return nil, err
	}
	out := GetResponse{AccountID: c.acct, State: st, List: []any{}, NotFound: []string{}}
	var ids []string
	if a.IDs == nil {
		l, err := c.h.mb.List(c.ctx, mailbox.ListOptions{Folder: "sent", Limit: c.h.lim.MaxObjectsInGet})
		if err != nil {
			return nil, err
		}
		for _, m := range l.Messages {
			ids = append(ids, m.ID)
		}
	} else {
		ids = *a.IDs
	}
	for _, id := range ids {
		m, err := c.h.mb.Get(c.ctx, id)
		if err != nil || m.Folder != "sent" && len(m.Deliveries) == 0 {
			out.NotFound = append(out.NotFound, id)
			continue
		}
		out.List = append(out.List, pick(submission(m), a.Properties))
	}
	return out, nil
}

func (c *call) submissionQuery(args json.RawMessage) (any, error) {
	var a QueryArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if len(a.Filter) > 0 && string(a.Filter) != "null" || len(a.Sort) > 0 {
		return nil, merr("unsupportedFilter", "EmailSubmission/query takes no filter or sort")
	}
	l, err := c.h.mb.List(c.ctx, mailbox.ListOptions{Folder: "sent"})
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(l.Messages))
	for i, m := range l.Messages {
		ids[i] = m.ID
	}
	out, err := window(ids, a, 1000)
	if err != nil {
		return nil, err
	}
	out.AccountID, out.QueryState = c.acct, l.Cursor
	return out, nil
}

func (c *call) submissionChanges(args json.RawMessage) (any, error) {
	return nil, merr("cannotCalculateChanges", "submissions are the sent folder: use Email/changes")
}

// submissionSet sends drafts (RFC 8621 §7.5): each create sends its
// emailId through mailbox.Service.Send, and onSuccessUpdateEmail /
// onSuccessDestroyEmail then run as an implicit Email/set, answered after.
func (c *call) submissionSet(args json.RawMessage) []Invocation {
	var a struct {
		SetArgs
		OnSuccessUpdateEmail  map[string]json.RawMessage `json:"onSuccessUpdateEmail"`
		OnSuccessDestroyEmail []string                   `json:"onSuccessDestroyEmail"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return []Invocation{errInvocation("", err)}
	}
	old, err := c.state()
	if err != nil {
		return []Invocation{errInvocation("", err)}
	}
	if err := c.checkSet(&a.SetArgs, old); err != nil {
		return []Invocation{errInvocation("", err)}
	}
	out := newSetResponse(c.acct, old)
	for cid, raw := range a.Create {
		var s struct {
			IdentityID string          `json:"identityId"`
			EmailID    string          `json:"emailId"`
			Envelope   json.RawMessage `json:"envelope"`
		}
		if err := decodeArgs(raw, &s); err != nil {
			out.NotCreated[cid] = setErr("invalidProperties", err.(*MethodError).Description)
			continue
		}
		if s.IdentityID != "me" {
			out.NotCreated[cid] = setErr("invalidProperties", "no identity "+s.IdentityID, "identityId")
			continue
		}
		if len(s.Envelope) > 0 && string(s.Envelope) != "null" {
			out.NotCreated[cid] = setErr("invalidProperties", "the envelope is the draft's own recipients", "envelope")
			continue
		}
		m, err := c.h.mb.Send(c.ctx, c.resolveID(s.EmailID))
		if err != nil {
			se := toSetError(err)
			if se.Type == "notFound" {
				se = setErr("invalidProperties", "no draft "+s.EmailID, "emailId")
			} else if se.Type == "invalidProperties" || se.Type == "forbidden" {
				se = setErr("invalidEmail", se.Description)
			}
			out.NotCreated[cid] = se
			continue
		}
		c.created[cid] = m.ID
		out.Created[cid] = map[string]any{"id": m.ID, "threadId": threadID(m), "undoStatus": "final"}
	}
	for id := range a.Update {
		out.NotUpdated[id] = setErr("cannotUnsend", "a sent message cannot be changed")
	}
	for _, id := range a.Destroy {
		out.NotDestroyed[id] = setErr("forbidden", "submissions are kept as the sent messages")
	}
	if out.NewState, err = c.state(); err != nil {
		return []Invocation{errInvocation("", err)}
	}
	b, _ := json.Marshal(out)
	res := []Invocation{{Name: "EmailSubmission/set", Args: b}}
	if len(a.OnSuccessUpdateEmail) == 0 && len(a.OnSuccessDestroyEmail) == 0 {
		return res
	}
	upd := map[string]json.RawMessage{}
	for k, v := range a.OnSuccessUpdateEmail {
		if strings.HasPrefix(k, "#") {
			if _, ok := out.Created[k[1:]]; !ok {
				continue
			}
			k = c.created[k[1:]]
		}
		upd[k] = v
	}
	var destroy []string
	for _, k := range a.OnSuccessDestroyEmail {
		if strings.HasPrefix(k, "#") {
			if _, ok := out.Created[k[1:]]; !ok {
				continue
			}
			k = c.created[k[1:]]
		}
		destroy = append(destroy, k)
	}
	eargs, _ := json.Marshal(map[string]any{"accountId": c.acct, "update": upd, "destroy": destroy})
	r, err := c.emailSet(eargs)
	if err != nil {
		return append(res, errInvocation("", err))
	}
	eb, _ := json.Marshal(r)
	return append(res, Invocation{Name: "Email/set", Args: eb})
}
