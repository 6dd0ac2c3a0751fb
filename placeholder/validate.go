package placeholder

import (
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/pullmail/pullmail/resource"
)

// Validate checks a message built in code against every rule that Parse
// applies (docs/PROTOCOL.md §2–§3), including the document size of its
// canonical form. A zero field of lim means the default.
func (m *Message) Validate(lim Limits) error {
	return m.validate(lim.withDefaults(), true)
}

func (m *Message) validate(lim Limits, checkSize bool) error {
	if checkSize {
		if n := len(m.Canonical()); n > lim.MaxDocument {
			return invalid(CodeDocumentTooLarge, "the document has %d bytes, more than %d", n, lim.MaxDocument)
		}
	}
	if err := checkHeader(m.Header, lim); err != nil {
		return err
	}
	if err := checkMultipart(m.Header, "the message"); err != nil {
		return err
	}
	if len(m.Parts) == 0 {
		return invalid(CodeMissingMember, `the message has no "parts"`)
	}
	n := 0
	return checkParts(m.Parts, 1, lim, &n)
}

func checkParts(ps []Part, depth int, lim Limits, n *int) error {
	if depth > lim.MaxDepth {
		return invalid(CodeTooDeep, "parts are nested deeper than %d", lim.MaxDepth)
	}
	for _, p := range ps {
		*n++
		if *n > lim.MaxParts {
			return invalid(CodeTooManyParts, "more than %d parts", lim.MaxParts)
		}
		if err := checkHeader(p.Header, lim); err != nil {
			return err
		}
		if p.IsLeaf() {
			if _, err := leafOf(p.Header); err != nil {
				return err
			}
			continue
		}
		if err := checkMultipart(p.Header, "a part with parts"); err != nil {
			return err
		}
		if err := checkParts(p.Parts, depth+1, lim, n); err != nil {
			return err
		}
	}
	return nil
}

// checkMultipart checks the headers of a node that has parts: Content-Type
// one multipart/* string, and no Content-ID (a Content-ID names a resource,
// and only leaves reference resources).
func checkMultipart(h Header, what string) error {
	ct, ok := h.Lookup(HContentType)
	if !ok {
		return invalid(CodeBadContentType, "%s needs a multipart/* Content-Type", what)
	}
	if ct.IsList() {
		return invalid(CodeBadContentType, "the Content-Type of %s must be one string", what)
	}
	mt, _, err := mime.ParseMediaType(ct.String())
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		return invalid(CodeBadContentType, "the Content-Type of %s must be multipart/*, not %q", what, ct.String())
	}
	if h.Has(HContentID) {
		return invalid(CodeBadContentID, "%s must not have a Content-ID", what)
	}
	return nil
}

// checkHeader checks names and values: the rules of every header, and the
// syntax of the registered ones whose syntax does not depend on the part.
func checkHeader(h Header, lim Limits) error {
	if h.Len() > lim.MaxHeaders {
		return invalid(CodeTooManyHeaders, "more than %d headers in one part", lim.MaxHeaders)
	}
	seen := make(map[string]string, h.Len())
	for _, f := range h.fields {
		if !validName(f.Name) {
			return invalid(CodeBadHeaderName, "%q is not an RFC 5322 field name", f.Name)
		}
		lower := strings.ToLower(f.Name)
		if r, ok := registered[lower]; ok && r != f.Name {
			return invalid(CodeBadHeaderName, "header %q must be spelled %q", f.Name, r)
		}
		if prev, dup := seen[lower]; dup {
			return invalid(CodeDuplicateHeader, "headers %q and %q differ only in case", prev, f.Name)
		}
		seen[lower] = f.Name
		if f.Value.IsZero() {
			return invalid(CodeBadHeaderValue, "header %q has an empty value", f.Name)
		}
		if f.Value.size() > lim.MaxHeaderValue {
			return invalid(CodeHeaderTooLarge, "header %q is larger than %d bytes", f.Name, lim.MaxHeaderValue)
		}
		for _, s := range f.Value.vals {
			if !utf8.ValidString(s) {
				return invalid(CodeBadHeaderValue, "header %q is not valid UTF-8", f.Name)
			}
			if strings.ContainsAny(s, "\r\n\x00") {
				return invalid(CodeBadHeaderValue, "header %q contains CR, LF or NUL", f.Name)
			}
		}
		if err := checkRegistered(f.Name, f.Value); err != nil {
			return err
		}
	}
	return nil
}

// checkRegistered checks the syntax of the registered headers
// (docs/PROTOCOL.md §2.4).
func checkRegistered(name string, v Value) error {
	single := func() error {
		if v.IsList() {
			return invalid(CodeBadHeaderValue, "header %q must be one string, not an array", name)
		}
		return nil
	}
	switch name {
	case HFrom, HForwardedFrom:
		if err := single(); err != nil {
			return err
		}
		if _, err := NormalizeAddress(v.String()); err != nil {
			return wrapInvalid(err, CodeBadAddress, "header %q must hold exactly one address", name)
		}
	case HTo, HCc, HBcc, HForwardedTo:
		if _, err := addressList(v); err != nil {
			return wrapInvalid(err, CodeBadAddress, "header %q: bad address list", name)
		}
	case HDate:
		if err := single(); err != nil {
			return err
		}
		if _, err := mail.ParseDate(v.String()); err != nil {
			return wrapInvalid(err, CodeBadHeaderValue, "header %q is not an RFC 5322 date-time", name)
		}
	case HMessageID, HThreadID, HInReplyTo:
		if err := single(); err != nil {
			return err
		}
		if !validMsgID(v.String()) {
			return invalid(CodeBadHeaderValue, "header %q must be one <left@right> message id", name)
		}
	case HReferences:
		for _, s := range v.vals {
			ids := strings.Fields(s)
			if len(ids) == 0 {
				return invalid(CodeBadHeaderValue, "header %q must list message ids", name)
			}
			for _, id := range ids {
				if !validMsgID(id) {
					return invalid(CodeBadHeaderValue, "header %q must list <left@right> message ids", name)
				}
			}
		}
	case HBodyDigest, HRecipientsDigest, HJWTAssertionDigest:
		if err := single(); err != nil {
			return err
		}
		if !validDigest(v.String()) {
			return invalid(CodeBadHeaderValue, "header %q must be <43 base64url characters>", name)
		}
	case HSubject, HDestinationMailboxURL, HCorrespondenceCategory:
		return single()
	case HContentDisposition:
		if v.IsList() {
			return invalid(CodeBadContentDisposition, "Content-Disposition must be one string")
		}
		if _, _, err := parseDisposition(v.String()); err != nil {
			return err
		}
	case HContentID:
		if v.IsList() {
			return invalid(CodeBadContentID, "Content-ID must be one string <ID>")
		}
	}
	return nil
}

// validDigest reports whether s is "<" + 43 characters of unpadded base64url
// of 32 bytes + ">".
func validDigest(s string) bool {
	if len(s) != 45 || s[0] != '<' || s[44] != '>' {
		return false
	}
	_, err := resource.ParseID(s[1:44])
	return err == nil
}

// validMsgID checks RFC 5322 §3.6.4 msg-id in its strict form:
// "<" dot-atom-text "@" dot-atom-text ">".
func validMsgID(s string) bool {
	if len(s) < 5 || s[0] != '<' || s[len(s)-1] != '>' {
		return false
	}
	left, right, ok := strings.Cut(s[1:len(s)-1], "@")
	return ok && dotAtom(left) && dotAtom(right)
}

func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// CheckField checks one header field by the rules that Validate applies to
// every field of a headers object (name, value form, size, UTF-8, no CR/LF/NUL
// and a registered header's syntax). A converter from another format (package
// mimeconv) uses it to decide, field by field, what it can carry as is.
func CheckField(name string, v Value, lim Limits) error {
	h := Header{fields: []Field{{Name: name, Value: v}}}
	return checkHeader(h, lim.withDefaults())
}
