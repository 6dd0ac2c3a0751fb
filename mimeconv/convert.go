package mimeconv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"strings"

	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// Store is what Convert needs of a resource store: it stores the decoded
// parts and, should the placeholder need the fallback of §13.5, reads them
// back once.
type Store interface {
	resource.Putter
	resource.Fetcher
}

// Options tune Convert. The zero value is ready to use.
type Options struct {
	// TempDir is where a large literal stream or quoted-printable body
	// spills while the message streams in ("" is os.TempDir()).
	TempDir string
	// Limits are the placeholder limits to keep to (zero fields: the
	// defaults of docs/PROTOCOL.md §2.5).
	Limits placeholder.Limits
}

// Result is a converted message.
type Result struct {
	// Message is the placeholder: the message's headers and MIME tree, its
	// leaves naming the decoded resources. It has no Body-Digest; what a
	// receiving server adds (Received, X-Destination-…) is the caller's.
	Message *placeholder.Message
	// Record writes the original back (Render).
	Record *Record
	// Resources are the resources stored that the message and its record
	// need, in the order stored (one may appear more than once). The
	// caller references all of them, so that none is collected.
	Resources []resource.Info
}

// fragment is a piece of input: a whole line, or part of a line longer than
// the read buffer. start: it begins a line; end: it ends one (with its line
// end, or at the end of the input without one).
type fragment struct {
	b          []byte
	start, end bool
}

// readBuffer bounds a line fragment: lines longer than this arrive in
// pieces, which is why no line can be a boundary delimiter if it is longer.
const readBuffer = 64 << 10

// Field caps keep the parsed header view bounded whatever the input; the
// header block itself is always kept whole, as literal bytes.
const (
	maxFieldBytes = 64 << 10
	maxFields     = 1000
)

type term int

const (
	termBody  term = iota // the header block ended with its blank line
	termDelim             // a boundary delimiter line is pending
	termEOF               // the input ended
)

type conv struct {
	ctx   context.Context
	store Store
	opt   Options
	lim   placeholder.Limits

	in      *countingReader
	br      *bufio.Reader
	atStart bool
	pending *fragment
	pbuf    []byte

	lits  spool
	ops   []Op
	res   []resource.Info
	parts int
}

type countingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// Convert reads the message r (RFC 5322, as after SMTP's dot-unstuffing) to
// its end, stores its decoded parts in store, and returns the placeholder
// and the record that Render needs to write r back exactly. Any input
// converts (what is not well-formed MIME is kept as literal bytes); the
// errors are those of reading r, of the store and of the context. On an
// error, resources already stored stay (unreferenced: collectable).
func Convert(ctx context.Context, r io.Reader, store Store, opt Options) (*Result, error) {
	c := &conv{ctx: ctx, store: store, opt: opt, lim: opt.Limits.WithDefaults(), atStart: true}
	c.in = &countingReader{r: r, h: sha256.New()}
	c.br = bufio.NewReaderSize(c.in, readBuffer)
	c.lits.dir = opt.TempDir
	defer c.lits.Close()
	msg, err := c.message()
	if err != nil {
		return nil, err
	}
	rec := &Record{
		Version: RecordVersion,
		Size:    c.in.n,
		SHA256:  base64.RawURLEncoding.EncodeToString(c.in.h.Sum(nil)),
		Ops:     c.ops,
	}
	if c.lits.Len() <= maxInlineLits {
		rec.Lits = append([]byte(nil), c.lits.Bytes()...)
	} else {
		info, err := c.store.Put(ctx, c.lits.Reader(), resource.PutOptions{Size: c.lits.Len()})
		if err != nil {
			return nil, fmt.Errorf("mimeconv: storing the literal stream: %w", err)
		}
		rec.LitsID, rec.LitsSize = info.ID, info.Size
		c.res = append(c.res, info)
	}
	res := &Result{Message: msg, Record: rec, Resources: c.res}
	if err := msg.Validate(c.lim); err != nil {
		return c.fallback(res)
	}
	return res, nil
}

// next returns the next fragment of input, or false at its end.
func (c *conv) next() (fragment, bool, error) {
	if err := c.ctx.Err(); err != nil {
		return fragment{}, false, err
	}
	if c.pending != nil {
		f := *c.pending
		c.pending = nil
		return f, true, nil
	}
	b, err := c.br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		f := fragment{b: b, start: c.atStart}
		c.atStart = false
		return f, true, nil
	case errors.Is(err, io.EOF):
		if len(b) == 0 {
			return fragment{}, false, nil
		}
	case err != nil:
		return fragment{}, false, fmt.Errorf("mimeconv: reading the message: %w", err)
	}
	f := fragment{b: b, start: c.atStart, end: true}
	c.atStart = true
	return f, true, nil
}

// unread makes f the next fragment again (a delimiter line for the part that
// encloses the current one).
func (c *conv) unread(f fragment) {
	c.pbuf = append(c.pbuf[:0], f.b...)
	c.pending = &fragment{b: c.pbuf, start: f.start, end: f.end}
}

// lit writes b to the literal stream and records it in order.
func (c *conv) lit(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, err := c.lits.Write(b); err != nil {
		return err
	}
	c.addOp(Op{Op: OpLit, N: int64(len(b))})
	return nil
}

// addOp appends an operation, merging consecutive literals.
func (c *conv) addOp(op Op) {
	if op.Op == OpLit && len(c.ops) > 0 && c.ops[len(c.ops)-1].Op == OpLit {
		c.ops[len(c.ops)-1].N += op.N
		return
	}
	c.ops = append(c.ops, op)
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// splitEOL returns a complete line's content and its line end ("\r\n",
// "\n" or none at the end of the input).
func splitEOL(b []byte) (content, eol []byte) {
	c := trimEOL(b)
	return c, b[len(c):]
}

// delim reports whether f is a boundary delimiter line of one of the
// boundaries in stack (RFC 2046 §5.1.1: "--" boundary, "--" for the close
// delimiter, then only linear white space), and of which.
func delim(f fragment, stack []string) (idx int, close, ok bool) {
	if !f.start || !f.end || len(stack) == 0 || !bytes.HasPrefix(f.b, []byte("--")) {
		return 0, false, false
	}
	line := trimEOL(f.b)[2:]
	for i := len(stack) - 1; i >= 0; i-- {
		b := stack[i]
		if !bytes.HasPrefix(line, []byte(b)) {
			continue
		}
		rest := line[len(b):]
		cl := bytes.HasPrefix(rest, []byte("--"))
		if cl {
			rest = rest[2:]
		}
		if len(bytes.Trim(rest, " \t")) == 0 {
			return i, cl, true
		}
	}
	return 0, false, false
}

// rawField is a header field as read: its name and its unfolded value,
// undecoded.
type rawField struct {
	name  string
	value []byte
	over  bool // longer than maxFieldBytes: left out of the placeholder
}

func (f *rawField) add(b []byte) {
	if f.over || len(f.value)+len(b) > maxFieldBytes {
		f.over = true
		f.value = nil
		return
	}
	f.value = append(f.value, b...)
}

// header reads a header block up to and including its blank line, as
// literal bytes, and returns its fields. A delimiter line of an enclosing
// part ends it early (left pending), as does the end of the input.
func (c *conv) header(stack []string) ([]rawField, term, error) {
	var fields []rawField
	cur := -1
	for {
		f, ok, err := c.next()
		if err != nil {
			return nil, 0, err
		}
		if !ok {
			return fields, termEOF, nil
		}
		if _, _, d := delim(f, stack); d {
			c.unread(f)
			return fields, termDelim, nil
		}
		if err := c.lit(f.b); err != nil {
			return nil, 0, err
		}
		line := f.b
		if f.end {
			line = trimEOL(line)
		}
		switch {
		case f.start && f.end && len(line) == 0:
			return fields, termBody, nil
		case !f.start:
			if cur >= 0 {
				fields[cur].add(line)
			}
		case line[0] == ' ' || line[0] == '\t':
			if cur >= 0 {
				fields[cur].add(line)
			}
		default:
			i := bytes.IndexByte(line, ':')
			if i <= 0 || len(fields) >= maxFields {
				cur = -1
				continue
			}
			name := string(bytes.TrimRight(line[:i], " \t"))
			fields = append(fields, rawField{name: name})
			cur = len(fields) - 1
			fields[cur].add(line[i+1:])
		}
	}
}

// field is a header field for the placeholder: decoded (RFC 2047), valid
// UTF-8, trimmed.
type field struct {
	name, lower, value string
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

func decodeFields(raw []rawField) []field {
	out := make([]field, 0, len(raw))
	for _, r := range raw {
		if r.over {
			continue
		}
		v := strings.Trim(string(r.value), " \t")
		if d, err := wordDecoder.DecodeHeader(v); err == nil {
			v = d
		}
		v = strings.ToValidUTF8(v, "\uFFFD")
		v = strings.Map(func(r rune) rune {
			if r == 0 || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, v)
		out = append(out, field{name: r.name, lower: strings.ToLower(r.name), value: v})
	}
	return out
}

func lookup(fs []field, lower string) (string, bool) {
	for _, f := range fs {
		if f.lower == lower {
			return f.value, true
		}
	}
	return "", false
}

// entity reads one part (or the message): its header block and its body. The
// fields returned are the part's own; the part carries them already except
// for the message itself, whose caller sorts them.
func (c *conv) entity(stack []string, depth int, digest bool) ([]field, placeholder.Part, term, error) {
	raw, t, err := c.header(stack)
	if err != nil {
		return nil, placeholder.Part{}, 0, err
	}
	fs := decodeFields(raw)
	pf := fs // the fields the part carries: for the message, its Content-* only
	if depth == 0 {
		pf = nil
		for _, f := range fs {
			if isContent(f.lower) {
				pf = append(pf, f)
			}
		}
	}
	ctv, hasCT := lookup(fs, "content-type")
	mt, params, perr := mime.ParseMediaType(ctv)
	if !hasCT || perr != nil {
		mt, params = "text/plain", nil
		if digest {
			mt = "message/rfc822"
		}
	}
	if t == termBody && strings.HasPrefix(mt, "multipart/") && validBoundary(params["boundary"]) && depth+1 <= c.lim.MaxDepth {
		parts, t, err := c.multipart(params["boundary"], stack, depth, mt == "multipart/digest")
		if err != nil {
			return nil, placeholder.Part{}, 0, err
		}
		if len(parts) > 0 {
			return fs, multipartPart(pf, ctv, parts), t, nil
		}
		// A multipart with no part: its bytes are all literal; the
		// placeholder shows an empty leaf of its type.
		info, err := c.putEmpty()
		if err != nil {
			return nil, placeholder.Part{}, 0, err
		}
		return fs, leafPart(pf, info, mt), t, nil
	}
	cte, _ := lookup(fs, "content-transfer-encoding")
	info, t, err := c.body(stack, t, strings.ToLower(strings.TrimSpace(cte)))
	if err != nil {
		return nil, placeholder.Part{}, 0, err
	}
	defType := "text/plain; charset=us-ascii"
	if digest {
		defType = "message/rfc822"
	}
	if hasCT && perr == nil {
		defType = ctv
	}
	return fs, leafPart(pf, info, defType), t, nil
}

// validBoundary: RFC 2046 §5.1.1 allows 1 to 70 characters; a longer one is
// still used (the parser only needs it to be findable), an empty one or one
// with a line break is not.
func validBoundary(b string) bool {
	return b != "" && len(b) <= 200 && !strings.ContainsAny(b, "\r\n")
}

func (c *conv) putEmpty() (resource.Info, error) {
	info, err := c.store.Put(c.ctx, bytes.NewReader(nil), resource.PutOptions{Size: 0})
	if err != nil {
		return resource.Info{}, fmt.Errorf("mimeconv: storing an empty part: %w", err)
	}
	c.res = append(c.res, info)
	return info, nil
}

// multipart reads a multipart body: preamble, parts, epilogue. It returns
// at the end of the input or at a delimiter of an enclosing part (pending).
func (c *conv) multipart(boundary string, outer []string, depth int, digest bool) ([]placeholder.Part, term, error) {
	stack := append(outer[:len(outer):len(outer)], boundary)
	me := len(stack) - 1
	var parts []placeholder.Part
	// The preamble, up to the first delimiter.
	for {
		f, ok, err := c.next()
		if err != nil {
			return nil, 0, err
		}
		if !ok {
			return nil, termEOF, nil
		}
		i, cl, d := delim(f, stack)
		if d && i < me {
			c.unread(f)
			return nil, termDelim, nil
		}
		if err := c.lit(f.b); err != nil {
			return nil, 0, err
		}
		if d && cl {
			t, err := c.epilogue(stack[:me])
			return parts, t, err
		}
		if d {
			break
		}
	}
	for {
		if c.parts >= c.lim.MaxParts {
			// More parts than a placeholder may hold: the rest of this
			// multipart is literal bytes.
			t, err := c.epilogue(stack[:me])
			return parts, t, err
		}
		c.parts++
		_, p, t, err := c.entity(stack, depth+1, digest)
		if err != nil {
			return nil, 0, err
		}
		parts = append(parts, p)
		if t == termEOF {
			return parts, termEOF, nil
		}
		f, _, err := c.next() // the pending delimiter
		if err != nil {
			return nil, 0, err
		}
		i, cl, _ := delim(f, stack)
		if i < me {
			c.unread(f)
			return parts, termDelim, nil
		}
		if err := c.lit(f.b); err != nil {
			return nil, 0, err
		}
		if cl {
			t, err := c.epilogue(stack[:me])
			return parts, t, err
		}
	}
}

// epilogue reads literal bytes up to a delimiter of an enclosing part or the
// end of the input. It returns the term and an error, in that order, so that
// multipart can return it whole.
func (c *conv) epilogue(outer []string) (term, error) {
	for {
		f, ok, err := c.next()
		if err != nil {
			return 0, err
		}
		if !ok {
			return termEOF, nil
		}
		if _, _, d := delim(f, outer); d {
			c.unread(f)
			return termDelim, nil
		}
		if err := c.lit(f.b); err != nil {
			return 0, err
		}
	}
}
