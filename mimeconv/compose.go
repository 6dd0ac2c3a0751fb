package mimeconv

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// ComposeOptions tune Compose.
type ComposeOptions struct {
	// KeepBcc writes the Bcc header (the author's own copy); a message
	// for its recipients never carries it.
	KeepBcc bool
}

// internalHeaders are Pullmail's own, meaningless outside it: the signed
// envelope's digests, routing, and where a message's record lives. They
// are not written as MIME.
var internalHeaders = map[string]bool{
	placeholder.HBodyDigest: true, placeholder.HRecipientsDigest: true, placeholder.HJWTAssertionDigest: true,
	placeholder.HDestinationMailboxURL: true, "X-MIME-Record": true,
}

// addressHeaders hold address lists: a list value is one field, its
// elements joined by ", ", and display names are RFC 2047-encoded.
var addressHeaders = map[string]bool{
	placeholder.HFrom: true, placeholder.HTo: true, placeholder.HCc: true, placeholder.HBcc: true,
	"Reply-To": true, "Sender": true, placeholder.HForwardedFrom: true, placeholder.HForwardedTo: true,
}

// firstHeaders come first, in this order (RFC 5322 §3.6 suggests no order;
// this is the one most software writes, and one order makes every
// rendering of a message the same).
var firstHeaders = []string{placeholder.HReceived, placeholder.HDate, placeholder.HFrom, "Sender", "Reply-To",
	placeholder.HTo, placeholder.HCc, placeholder.HBcc, placeholder.HSubject, placeholder.HMessageID,
	placeholder.HInReplyTo, placeholder.HReferences}

// Compose writes m as an Internet message (RFC 5322, MIME) for a mail
// system that knows no placeholders: SMTP out, IMAP, JMAP, export. It is
// for messages that have no record (written in Pullmail); a message that
// came by SMTP is written back by Render. The output is the same for the
// same message every time (IMAP needs that): boundaries derive from the
// message's parts. Text parts are quoted-printable (CRLF line ends, no
// line over 76 characters), other parts base64 in 76-character lines,
// message/rfc822 parts as they are (8bit); header values are RFC
// 2047-encoded where not ASCII and folded at 78 characters. Resources are
// streamed from f: constant memory whatever their size. docs/PROTOCOL.md
// §13.8.
func Compose(ctx context.Context, w io.Writer, m *placeholder.Message, f resource.Fetcher, opt ComposeOptions) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	c := &composer{ctx: ctx, w: bw, f: f}
	h := m.Header
	var fields []placeholder.Field
	for _, name := range firstHeaders {
		if v, ok := h.Lookup(name); ok && (name != placeholder.HBcc || opt.KeepBcc) {
			fields = append(fields, placeholder.Field{Name: name, Value: v})
		}
	}
	for _, fl := range h.Fields() {
		if isFirst(fl.Name) || internalHeaders[fl.Name] || fl.Name == placeholder.HContentType || fl.Name == "MIME-Version" {
			continue
		}
		fields = append(fields, fl)
	}
	for _, fl := range fields {
		c.field(fl.Name, fl.Value)
	}
	c.line("MIME-Version: 1.0")
	c.multipart(h.Get(placeholder.HContentType).String(), m.Parts, "0")
	c.write("\r\n")
	if c.err != nil {
		return c.err
	}
	return bw.Flush()
}

func isFirst(name string) bool {
	for _, n := range firstHeaders {
		if n == name {
			return true
		}
	}
	return false
}

type composer struct {
	ctx context.Context
	w   *bufio.Writer
	f   resource.Fetcher
	err error
}

func (c *composer) write(s string) {
	if c.err == nil {
		_, c.err = c.w.WriteString(s)
	}
}

func (c *composer) line(s string) { c.write(s + "\r\n") }

// field writes one header field, or several for a list value that is not
// an address list nor References.
func (c *composer) field(name string, v placeholder.Value) {
	vals := v.List()
	switch {
	case addressHeaders[name]:
		c.fold(name, addressList(strings.Join(vals, ", ")))
	case name == placeholder.HReferences:
		c.fold(name, strings.Join(vals, " "))
	default:
		for _, s := range vals {
			c.fold(name, unstructured(s))
		}
	}
}

// unstructured encodes a value that is not ASCII as RFC 2047 words.
func unstructured(s string) string {
	if isASCII(s) {
		return s
	}
	return mime.QEncoding.Encode("utf-8", s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// addressList re-writes an address list with its display names encoded
// (net/mail's formatting); one that does not parse is encoded whole.
func addressList(s string) string {
	addrs, err := mail.ParseAddressList(s)
	if err != nil {
		return unstructured(s)
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
		if a.Name == "" { // "<a@b>" reads as the bare address
			out[i] = strings.TrimSuffix(strings.TrimPrefix(out[i], "<"), ">")
		}
	}
	return strings.Join(out, ", ")
}

// fold writes "Name: value" folded at white space to lines of at most 78
// characters where it can (RFC 5322 §2.2.3), the first word on a line of
// its own when it does not fit beside the name (an encoded word is up to
// 75); a word longer than a line stays whole.
func (c *composer) fold(name, value string) {
	line := name + ":"
	for _, wd := range strings.Fields(value) {
		if len(line)+1+len(wd) > 78 && strings.TrimSpace(line) != "" {
			c.line(line)
			line = ""
		}
		line += " " + wd
	}
	c.line(line)
}

// boundary is a multipart's boundary: derived from its parts, so the same
// message is always written alike, and starting with "=_", which neither
// quoted-printable ("=" is always escaped) nor base64 can produce; only an
// 8bit message/rfc822 part could hold it, and it would have to contain the
// digest of itself.
func boundary(parts []placeholder.Part, path string) string {
	sum := sha256.Sum256(append([]byte("pullmail boundary "+path+"\x00"), (&placeholder.Message{Parts: parts}).CanonicalParts()...))
	return "=_" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

func (c *composer) multipart(contentType string, parts []placeholder.Part, path string) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		mt, params = "multipart/mixed", nil
	}
	if params == nil {
		params = map[string]string{}
	}
	b := boundary(parts, path)
	params["boundary"] = b
	c.line("Content-Type: " + mime.FormatMediaType(mt, params))
	c.line("")
	for i, p := range parts {
		c.line("--" + b)
		sub := path + "." + strconv.Itoa(i)
		if p.IsLeaf() {
			c.leaf(p)
		} else {
			c.partFields(p.Header, nil)
			c.multipart(p.Header.Get(placeholder.HContentType).String(), p.Parts, sub)
		}
		// The line end before a delimiter is the delimiter's (RFC 2046
		// §5.1.1): a body's last line is written without one.
		c.write("\r\n")
	}
	c.write("--" + b + "--")
}

// partFields writes a part's other fields: what the placeholder keeps that
// MIME does not set itself.
func (c *composer) partFields(h placeholder.Header, skip map[string]bool) {
	for _, fl := range h.Fields() {
		switch fl.Name {
		case placeholder.HContentType, placeholder.HContentID, placeholder.HContentDisposition,
			OriginalPrefix + "Content-ID", OriginalPrefix + "Content-Type", OriginalPrefix + "Content-Disposition":
			continue
		}
		if internalHeaders[fl.Name] || skip[fl.Name] {
			continue
		}
		c.field(fl.Name, fl.Value)
	}
}

func (c *composer) leaf(p placeholder.Part) {
	l, err := p.Leaf()
	if err != nil {
		c.err = err
		return
	}
	h := p.Header
	mt, _, _ := mime.ParseMediaType(l.ContentType)
	c.line("Content-Type: " + l.ContentType)
	enc := "base64"
	switch {
	case strings.HasPrefix(mt, "text/"):
		enc = "quoted-printable"
	case mt == "message/rfc822" || mt == "message/global":
		enc = "8bit"
	}
	c.line("Content-Transfer-Encoding: " + enc)
	if v, ok := h.Lookup(OriginalPrefix + "Content-Disposition"); ok {
		c.fold(placeholder.HContentDisposition, unstructured(v.String()))
	} else if l.Disposition != "" {
		params := map[string]string{}
		if l.Filename != "" {
			params["filename"] = l.Filename
		}
		c.fold(placeholder.HContentDisposition, mime.FormatMediaType(l.Disposition, params))
	}
	if v, ok := h.Lookup(OriginalPrefix + "Content-ID"); ok {
		c.line(placeholder.HContentID + ": " + v.String())
	} else {
		c.line(placeholder.HContentID + ": " + l.ID.ContentID())
	}
	c.partFields(h, nil)
	c.line("")
	if c.err != nil {
		return
	}
	o, err := c.f.Open(c.ctx, l.ID)
	if err != nil {
		c.err = fmt.Errorf("mimeconv: opening resource %s: %w", l.ID, err)
		return
	}
	defer o.Close()
	switch enc {
	case "quoted-printable":
		qw := quotedprintable.NewWriter(c.w)
		if _, err := io.Copy(qw, o); err != nil {
			c.err = err
			return
		}
		c.err = qw.Close()
	case "8bit":
		_, c.err = io.Copy(c.w, o)
	default:
		c.err = writeBase64(c.w, o, Op{N: l.Size, Line: 76, EOL: "\r\n"})
	}
}
