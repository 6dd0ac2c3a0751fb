package mimeconv

import (
	"io"
	"mime"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
	"golang.org/x/text/encoding/htmlindex"
)

// OriginalPrefix names a header kept beside the one the placeholder needs:
// a part's own Content-ID (the placeholder's names the resource), and any
// header whose value breaks the placeholder's syntax or names something only
// a Pullmail server may set (docs/PROTOCOL.md §13.2).
const OriginalPrefix = "X-Original-"

// reserved are the headers that a message from outside Pullmail cannot
// carry under their own names: they are Pullmail's signed envelope,
// forwarding and routing headers, or name resources.
var reserved = map[string]bool{
	"body-digest": true, "recipients-digest": true, "jwt-assertion-digest": true,
	"forwarded-from": true, "forwarded-to": true, "forwarded-message-id": true, "forwarded-note": true,
	"x-destination-mailbox-service-url": true, "x-thread-id": true, "content-id": true,
}

// charsetReader decodes RFC 2047 words in the charsets that the WHATWG
// Encoding Standard names (the labels browsers accept).
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return nil, err
	}
	return enc.NewDecoder().Reader(input), nil
}

// headerBuilder collects fields for one placeholder headers object: repeated
// names become a list, registered names get their one spelling, and what the
// placeholder cannot carry under its own name is renamed or left out.
type headerBuilder struct {
	lim   placeholder.Limits
	order []string
	vals  map[string][]string
	names map[string]string
}

func newHeaderBuilder(lim placeholder.Limits) *headerBuilder {
	return &headerBuilder{lim: lim, vals: map[string][]string{}, names: map[string]string{}}
}

func (b *headerBuilder) add(name, value string) {
	if value == "" {
		return
	}
	lower := strings.ToLower(name)
	if reserved[lower] {
		name = OriginalPrefix + name
		lower = strings.ToLower(name)
	}
	if _, ok := b.vals[lower]; !ok {
		if r, ok := placeholder.Registered(name); ok {
			name = r
		}
		b.order = append(b.order, lower)
		b.names[lower] = name
	}
	b.vals[lower] = append(b.vals[lower], value)
}

// into sets the collected fields on h (which may hold fields already, set by
// the converter: those win), within the limit on the number of headers.
func (b *headerBuilder) into(h *placeholder.Header) {
	for _, lower := range b.order {
		if h.Len() >= b.lim.MaxHeaders {
			return
		}
		name, vs := b.names[lower], b.vals[lower]
		v := placeholder.Single(vs[0])
		if len(vs) > 1 {
			v = placeholder.List(vs...)
		}
		for _, n := range []string{name, OriginalPrefix + name} {
			if h.Has(n) {
				break
			}
			if placeholder.CheckField(n, v, b.lim) == nil {
				h.Set(n, v)
				break
			}
		}
	}
}

// isContent reports whether a field describes a part's content (RFC 2045
// §9: the Content-* fields) rather than the message.
func isContent(lower string) bool { return strings.HasPrefix(lower, "content-") }

// leafPart is the placeholder leaf for a part whose decoded body is the
// resource info. mediaType is the part's Content-Type (or its default).
func leafPart(fs []field, info resource.Info, mediaType string) placeholder.Part {
	lim := placeholder.DefaultLimits()
	if _, _, err := mime.ParseMediaType(mediaType); err != nil ||
		placeholder.CheckField("X-Type", placeholder.Single(mediaType), lim) != nil {
		mediaType = "application/octet-stream"
	}
	// The placeholder's Content-Disposition has the disposition and the
	// filename only (§3.3); the original is kept beside it when it says more.
	var disp, filename, cdOrig string
	if v, ok := lookup(fs, "content-disposition"); ok {
		cdOrig = v
		if d, params, err := mime.ParseMediaType(v); err == nil && (d == "inline" || d == "attachment") {
			disp, filename = d, params["filename"]
			if filename == "" {
				filename = filename2231(v)
			}
			if _, hasName := params["filename"]; len(params) == 0 || (hasName && len(params) == 1) {
				cdOrig = "" // nothing the placeholder's does not say
			}
		}
	}
	p, err := placeholder.NewLeaf(info.ID, info.Size, mediaType, disp, filename)
	if err != nil {
		p, err = placeholder.NewLeaf(info.ID, info.Size, mediaType, disp, "")
	}
	if err != nil {
		p, _ = placeholder.NewLeaf(info.ID, info.Size, "application/octet-stream", "", "")
	}
	b := newHeaderBuilder(lim)
	if ct, ok := lookup(fs, "content-type"); ok && ct != mediaType {
		b.add(OriginalPrefix+"Content-Type", ct)
	}
	if filename != "" && !p.Header.Get(placeholder.HContentDisposition).IsZero() {
		if l, err := p.Leaf(); err != nil || l.Filename != filename {
			cdOrig = lookupOr(fs, "content-disposition")
		}
	}
	if cdOrig != "" {
		b.add(OriginalPrefix+"Content-Disposition", cdOrig)
	}
	for _, f := range fs {
		switch f.lower {
		case "content-type", "content-disposition", "content-transfer-encoding":
			continue
		}
		b.add(f.name, f.value)
	}
	b.into(&p.Header)
	return p
}

// multipartPart is the placeholder part for a multipart: its Content-Type as
// sent and its other fields, the transfer encoding aside (a multipart has
// none of its own to undo).
func multipartPart(fs []field, contentType string, parts []placeholder.Part) placeholder.Part {
	var p placeholder.Part
	p.Header.SetString(placeholder.HContentType, contentType)
	b := newHeaderBuilder(placeholder.DefaultLimits())
	for _, f := range fs {
		if f.lower == "content-type" || f.lower == "content-transfer-encoding" {
			continue
		}
		b.add(f.name, f.value)
	}
	b.into(&p.Header)
	p.Parts = parts
	return p
}

// threadID is the thread a message belongs to: the first message id of
// References (the thread's root), else In-Reply-To, else its own
// Message-ID; "" if none is a valid id.
func threadID(fs []field) string {
	var cands []string
	if v, ok := lookup(fs, "references"); ok {
		cands = append(cands, strings.Fields(v)...)
	}
	for _, n := range []string{"in-reply-to", "message-id"} {
		if v, ok := lookup(fs, n); ok {
			cands = append(cands, strings.Fields(v)...)
		}
	}
	for _, id := range cands {
		if placeholder.CheckField(placeholder.HThreadID, placeholder.Single(id), placeholder.DefaultLimits()) == nil {
			return id
		}
	}
	return ""
}

// message reads the whole input and builds the placeholder.
func (c *conv) message() (*placeholder.Message, error) {
	fs, part, t, err := c.entity(nil, 0, false)
	if err != nil {
		return nil, err
	}
	if t != termEOF {
		// Nothing encloses the message, so nothing can be pending; read
		// to the end all the same.
		if _, err := c.epilogue(nil); err != nil {
			return nil, err
		}
	}
	m := &placeholder.Message{}
	var content []field
	b := newHeaderBuilder(c.lim)
	for _, f := range fs {
		if isContent(f.lower) {
			content = append(content, f)
			continue
		}
		b.add(f.name, f.value)
	}
	if id := threadID(fs); id != "" {
		m.Header.SetString(placeholder.HThreadID, id)
	}
	if part.IsLeaf() {
		m.Header.SetString(placeholder.HContentType, "multipart/mixed")
		m.Parts = []placeholder.Part{part}
	} else {
		m.Header.SetString(placeholder.HContentType, part.Header.Get(placeholder.HContentType).String())
		m.Parts = part.Parts
		for _, f := range content {
			if f.lower != "content-type" && f.lower != "content-transfer-encoding" {
				b.add(f.name, f.value)
			}
		}
	}
	b.into(&m.Header)
	return m, nil
}

// filename2231 decodes an RFC 2231 filename*= parameter in a charset that
// Go's mime package does not decode (it knows only UTF-8 and US-ASCII and
// drops the parameter otherwise). Continuations (filename*0*=) are not
// joined: such a name stays only in the original header.
func filename2231(cd string) string {
	i := strings.Index(strings.ToLower(cd), "filename*=")
	if i < 0 {
		return ""
	}
	v := cd[i+len("filename*="):]
	if j := strings.IndexAny(v, "; \t"); j >= 0 {
		v = v[:j]
	}
	charset, rest, ok := strings.Cut(v, "'")
	if !ok {
		return ""
	}
	_, enc, ok := strings.Cut(rest, "'")
	if !ok {
		return ""
	}
	raw, err := url.PathUnescape(enc)
	if err != nil {
		return ""
	}
	r, err := charsetReader(charset, strings.NewReader(raw))
	if err != nil {
		return ""
	}
	b, err := io.ReadAll(r)
	if err != nil || !utf8.Valid(b) {
		return ""
	}
	return string(b)
}

func lookupOr(fs []field, lower string) string {
	v, _ := lookup(fs, lower)
	return v
}
