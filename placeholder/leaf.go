package placeholder

import (
	"fmt"
	"mime"
	"strconv"

	"github.com/pullmail/pullmail/resource"
)

// External-body parameters (docs/PROTOCOL.md §3.2).
const (
	ExternalBodyType = "message/external-body"
	AccessType       = "x-content-addressed-uri"
	HashAlgorithm    = "sha256"
)

// ExternalBody returns the first Content-Type string of a leaf for a resource
// of size bytes, in the one spelling this package writes.
func ExternalBody(size int64) string {
	return fmt.Sprintf(`%s; access-type="%s"; hash-algorithm="%s"; size="%d"`, ExternalBodyType, AccessType, HashAlgorithm, size)
}

// Leaf describes the External Resource that a leaf part references.
type Leaf struct {
	ID          resource.ID
	Size        int64
	ContentType string // the resource's own media type, as written
	Disposition string // "inline", "attachment", or "" when the part has none
	Filename    string // the filename parameter of Content-Disposition, or ""
}

// NewLeaf returns a leaf part referencing the resource id of size bytes.
// disposition is "", "inline" or "attachment"; filename is written as a
// Content-Disposition parameter (RFC 2231-encoded when it is not ASCII) and
// needs a disposition.
func NewLeaf(id resource.ID, size int64, contentType, disposition, filename string) (Part, error) {
	var h Header
	h.Set(HContentType, List(ExternalBody(size), contentType))
	h.SetString(HContentID, id.ContentID())
	if disposition != "" || filename != "" {
		var params map[string]string
		if filename != "" {
			params = map[string]string{"filename": filename}
		}
		cd := mime.FormatMediaType(disposition, params)
		if cd == "" {
			return Part{}, invalid(CodeBadContentDisposition, "cannot write disposition %q with filename %q", disposition, filename)
		}
		h.SetString(HContentDisposition, cd)
	}
	if _, err := leafOf(h); err != nil {
		return Part{}, err
	}
	return Part{Header: h}, nil
}

// Leaf returns the resource that the leaf part p references.
func (p Part) Leaf() (Leaf, error) {
	if !p.IsLeaf() {
		return Leaf{}, invalid(CodeBadContentType, "a part with parts references no resource")
	}
	return leafOf(p.Header)
}

// Leaves returns every leaf of m, depth first in document order: the
// External Resources that m references (a resource may appear more than
// once).
func (m *Message) Leaves() ([]Leaf, error) {
	var out []Leaf
	var walk func([]Part) error
	walk = func(ps []Part) error {
		for _, p := range ps {
			if p.IsLeaf() {
				l, err := leafOf(p.Header)
				if err != nil {
					return err
				}
				out = append(out, l)
				continue
			}
			if err := walk(p.Parts); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(m.Parts); err != nil {
		return nil, err
	}
	return out, nil
}

// leafOf checks the headers of a leaf (docs/PROTOCOL.md §3) and returns the
// resource it references.
func leafOf(h Header) (Leaf, error) {
	var l Leaf
	cid, ok := h.Lookup(HContentID)
	if !ok {
		return l, invalid(CodeBadContentID, "a leaf part needs a Content-ID")
	}
	s := cid.String()
	if cid.IsList() || len(s) < 2 || s[0] != '<' || s[len(s)-1] != '>' {
		return l, invalid(CodeBadContentID, "Content-ID must be one string <ID>")
	}
	id, err := resource.ParseID(s[1 : len(s)-1])
	if err != nil {
		return l, wrapInvalid(err, CodeBadContentID, "Content-ID %q is not <base64url(SHA-256)>", s)
	}
	l.ID = id

	ct, ok := h.Lookup(HContentType)
	if !ok || !ct.IsList() || ct.Len() != 2 {
		return l, invalid(CodeBadContentType, `a leaf's Content-Type must be an array of two strings: the message/external-body type and the resource's own type`)
	}
	types := ct.vals
	if l.Size, err = parseExternalBody(types[0]); err != nil {
		return l, err
	}
	if (l.Size == 0) != (id == resource.EmptyID) {
		return l, invalid(CodeBadContentType, "size %d does not fit Content-ID %s", l.Size, id)
	}
	if _, _, err := mime.ParseMediaType(types[1]); err != nil {
		return l, wrapInvalid(err, CodeBadContentType, "%q is not a media type", types[1])
	}
	l.ContentType = types[1]

	if cd, ok := h.Lookup(HContentDisposition); ok {
		if cd.IsList() {
			return l, invalid(CodeBadContentDisposition, "Content-Disposition must be one string")
		}
		if l.Disposition, l.Filename, err = parseDisposition(cd.String()); err != nil {
			return l, err
		}
	}
	return l, nil
}

// parseExternalBody checks the first Content-Type string of a leaf and
// returns its size.
func parseExternalBody(s string) (int64, error) {
	mt, params, err := mime.ParseMediaType(s)
	if err != nil {
		return 0, wrapInvalid(err, CodeBadContentType, "%q is not a media type (parameter values are quoted with double quotes)", s)
	}
	if mt != ExternalBodyType {
		return 0, invalid(CodeBadContentType, "a leaf's first Content-Type must be %s, not %q", ExternalBodyType, mt)
	}
	if params["access-type"] != AccessType || params["hash-algorithm"] != HashAlgorithm {
		return 0, invalid(CodeBadContentType, `%s needs access-type="%s" and hash-algorithm="%s"`, ExternalBodyType, AccessType, HashAlgorithm)
	}
	size, ok := params["size"]
	if !ok || len(params) != 3 {
		return 0, invalid(CodeBadContentType, "%s takes exactly access-type, hash-algorithm and size", ExternalBodyType)
	}
	n, ok := parseSize(size)
	if !ok {
		return 0, invalid(CodeBadContentType, "size %q is not a decimal number of bytes without leading zeros", size)
	}
	return n, nil
}

func parseSize(s string) (int64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// parseDisposition checks a Content-Disposition: inline or attachment, with
// at most a filename parameter (RFC 2183; RFC 2231 encoding allowed).
func parseDisposition(s string) (disposition, filename string, err error) {
	d, params, err := mime.ParseMediaType(s)
	if err != nil {
		return "", "", wrapInvalid(err, CodeBadContentDisposition, "bad Content-Disposition %q", s)
	}
	if d != "inline" && d != "attachment" {
		return "", "", invalid(CodeBadContentDisposition, "Content-Disposition must be inline or attachment, not %q", d)
	}
	for k := range params {
		if k != "filename" {
			return "", "", invalid(CodeBadContentDisposition, "Content-Disposition takes only a filename parameter, not %q", k)
		}
	}
	return d, params["filename"], nil
}
