package imapd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"github.com/pullmail/pullmail/errs"
)

// maxHeader bounds a header read into memory (ENVELOPE, HEADER.FIELDS):
// larger ones are cut there.
const maxHeader = 1 << 20

// PendingText is the body of a message whose resources are still being
// fetched (or could not be), shown in place of it so that a client has
// something to display; the real bytes replace it once complete (a new
// modseq tells the client to fetch again).
const PendingText = "This message is still being fetched from the sender's server.\r\n" +
	"Its content will appear here when it has arrived.\r\n"

// open returns the message's bytes: mailbox.Service.Raw, or for a message
// not complete a short text/plain message of its headers and PendingText.
func (s *session) open(id string) (io.ReadCloser, error) {
	r, err := s.srv.cfg.Mailbox.Raw(s.ctx, id)
	if err == nil {
		return r, nil
	}
	var e *errs.Error
	if !errors.As(err, &e) || (e.Code != "not_ready" && e.Code != "resource_unavailable") {
		return nil, imapErr(err, "reading the message")
	}
	m, gerr := s.srv.cfg.Mailbox.Get(s.ctx, id)
	if gerr != nil {
		return nil, imapErr(gerr, "reading the message")
	}
	var b bytes.Buffer
	clean := func(v string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(v) }
	fmt.Fprintf(&b, "From: %s\r\n", clean(m.From))
	if len(m.To) > 0 {
		fmt.Fprintf(&b, "To: %s\r\n", clean(strings.Join(m.To, ", ")))
	}
	fmt.Fprintf(&b, "Subject: %s\r\n", clean(m.Subject))
	if m.Date != nil {
		fmt.Fprintf(&b, "Date: %s\r\n", m.Date.Format(time.RFC1123Z))
	}
	fmt.Fprintf(&b, "Message-ID: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nX-Pullmail-Status: %s\r\n\r\n%s",
		clean(m.MessageID), m.Status, PendingText)
	return io.NopCloser(&b), nil
}

// part says which bytes of a message a section is.
type part int

const (
	whole part = iota
	header
	text
)

// span streams the message once and returns the offset and length of p.
func (s *session) span(id string, p part) (off, n int64, err error) {
	r, err := s.open(id)
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	total, hdr, err := countHeader(r)
	if err != nil {
		return 0, 0, imapErr(err, "rendering the message")
	}
	switch p {
	case header:
		return 0, hdr, nil
	case text:
		return hdr, total - hdr, nil
	}
	return 0, total, nil
}

// size is the length of p of the message (one render, counted).
func (s *session) size(id string, p part) (int64, error) {
	_, n, err := s.span(id, p)
	return n, err
}

// countHeader reads r to its end and returns its length and that of its
// header (through the blank line), in constant memory.
func countHeader(r io.Reader) (total, hdr int64, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	hdr = -1
	for hdr < 0 {
		line, err := br.ReadSlice('\n')
		total += int64(len(line))
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			return total, total, nil
		}
		if err != nil {
			return 0, 0, err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			hdr = total
		}
	}
	n, err := io.Copy(io.Discard, br)
	return total + n, hdr, err
}

// writeSection writes BODY[...] (whole, HEADER, TEXT, with <partial>)
// streamed from a second render; HEADER.FIELDS (.NOT) and numbered parts
// are cut from the header or the message by go-imap's extractor, which
// holds that section in memory.
func (s *session) writeSection(mw *imapserver.FetchResponseWriter, id string, b *imap.FetchItemBodySection) error {
	if len(b.Part) > 0 || len(b.HeaderFields) > 0 || len(b.HeaderFieldsNot) > 0 {
		return s.writeExtracted(mw, id, b)
	}
	p := whole
	switch b.Specifier {
	case imap.PartSpecifierHeader:
		p = header
	case imap.PartSpecifierText:
		p = text
	case imap.PartSpecifierMIME:
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "MIME needs a part number"}
	}
	off, n, err := s.span(id, p)
	if err != nil {
		return err
	}
	if b.Partial != nil {
		start := min(b.Partial.Offset, n)
		off, n = off+start, min(b.Partial.Size, n-start)
	}
	r, err := s.open(id)
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := io.CopyN(io.Discard, r, off); err != nil {
		return imapErr(err, "rendering the message")
	}
	wc := mw.WriteBodySection(b, n)
	if _, err := io.CopyN(wc, r, n); err != nil {
		wc.Close()
		return fmt.Errorf("writing message %s: %w", id, err)
	}
	return wc.Close()
}

func (s *session) writeExtracted(mw *imapserver.FetchResponseWriter, id string, b *imap.FetchItemBodySection) error {
	r, err := s.open(id)
	if err != nil {
		return err
	}
	defer r.Close()
	var src io.Reader = r
	if len(b.Part) == 0 {
		// Header fields: the header is enough.
		src = io.LimitReader(r, maxHeader)
	}
	out := imapserver.ExtractBodySection(src, b)
	wc := mw.WriteBodySection(b, int64(len(out)))
	if _, err := wc.Write(out); err != nil {
		wc.Close()
		return err
	}
	return wc.Close()
}

// envelope is the ENVELOPE of the message, from its header.
func (s *session) envelope(id string) (*imap.Envelope, error) {
	r, err := s.open(id)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	h, err := textproto.ReadHeader(bufio.NewReader(io.LimitReader(r, maxHeader)))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, imapErr(err, "reading the header")
	}
	return imapserver.ExtractEnvelope(h), nil
}

// bodyStructure is the BODYSTRUCTURE of the message, streamed: each
// leaf's bytes and lines are counted, never held.
func (s *session) bodyStructure(id string) (imap.BodyStructure, error) {
	r, err := s.open(id)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	br := bufio.NewReader(r)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, imapErr(err, "reading the header")
	}
	return structure(h, br, 0), nil
}

// maxDepth bounds the nesting of multiparts BODYSTRUCTURE descends.
const maxDepth = 32

func structure(raw textproto.Header, r io.Reader, depth int) imap.BodyStructure {
	h := gomessage.Header{Header: raw}
	mt, params, _ := h.ContentType()
	if mt == "" {
		mt, params = "text/plain", map[string]string{"charset": "us-ascii"}
	}
	typ, sub, _ := strings.Cut(mt, "/")
	disp := func() *imap.BodyStructureDisposition {
		d, p, err := h.ContentDisposition()
		if err != nil || d == "" {
			return nil
		}
		return &imap.BodyStructureDisposition{Value: d, Params: p}
	}
	if typ == "multipart" && depth < maxDepth {
		bs := &imap.BodyStructureMultiPart{Subtype: sub}
		mr := textproto.NewMultipartReader(r, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			bs.Children = append(bs.Children, structure(p.Header, p, depth+1))
		}
		if len(bs.Children) == 0 {
			bs.Children = append(bs.Children, &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain"})
		}
		bs.Extended = &imap.BodyStructureMultiPartExt{Params: params, Disposition: disp()}
		return bs
	}
	var c counter
	io.Copy(&c, r)
	bs := &imap.BodyStructureSinglePart{Type: typ, Subtype: sub, Params: params,
		ID: h.Get("Content-Id"), Description: h.Get("Content-Description"),
		Encoding: strings.ToLower(h.Get("Content-Transfer-Encoding")), Size: uint32(min(c.n, 1<<32-1))}
	if bs.Encoding == "" {
		bs.Encoding = "7bit"
	}
	if typ == "text" {
		bs.Text = &imap.BodyStructureText{NumLines: c.lines}
	}
	bs.Extended = &imap.BodyStructureSinglePartExt{Disposition: disp()}
	return bs
}

// counter counts bytes and lines written to it.
type counter struct{ n, lines int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	c.lines += int64(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}
