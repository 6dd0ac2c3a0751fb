package mimeconv

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime/quotedprintable"

	"github.com/pullmail/pullmail/resource"
)

// body streams a leaf's body from the input into the store, decoded, and
// records how to write it back. t is how the part's header block ended: with
// no blank line there is no body (an empty resource).
func (c *conv) body(stack []string, t term, cte string) (resource.Info, term, error) {
	if t != termBody {
		info, err := c.putEmpty()
		return info, t, err
	}
	r := &bodyReader{c: c, stack: stack}
	switch cte {
	case "base64":
		r.codec = &b64codec{r: r}
	case "quoted-printable":
		r.codec = newQPCodec(r, c.opt.TempDir)
	default: // 7bit, 8bit, binary, none, and encodings no one decodes
		r.codec = &idcodec{r: r}
	}
	defer r.codec.close()
	info, err := c.store.Put(c.ctx, r, resource.PutOptions{Size: -1})
	if r.err != nil {
		return resource.Info{}, 0, r.err
	}
	if err != nil {
		return resource.Info{}, 0, fmt.Errorf("mimeconv: storing a part: %w", err)
	}
	c.res = append(c.res, info)
	c.addOp(Op{Op: OpOpen, ID: info.ID})
	ops, err := r.codec.ops()
	if err != nil {
		return resource.Info{}, 0, err
	}
	for _, op := range ops {
		c.addOp(op)
	}
	if r.rawLit > 0 {
		c.addOp(Op{Op: OpLit, N: r.rawLit})
	}
	// The line end before the delimiter belongs to the delimiter.
	if err := c.lit(r.trailer); err != nil {
		return resource.Info{}, 0, err
	}
	return info, r.term, nil
}

// codec decodes a body line by line and decides how it will be re-encoded.
// write gives content bytes of the current line (several calls for a long
// line); endLine ends it with its line end (nil for the body's last line,
// whose line end, if any, belongs to the delimiter) ; end is called at the
// end of the input; ops, after the resource is stored, returns the
// operations that follow its open.
type codec interface {
	write(b []byte)
	endLine(eol []byte, last bool)
	end()
	ops() ([]Op, error)
	close()
}

// bodyReader is the io.Reader that Put reads: it pulls fragments from the
// input until a delimiter of an enclosing part, and hands out what its codec
// decoded.
type bodyReader struct {
	c       *conv
	stack   []string
	codec   codec
	out     []byte
	off     int
	held    []byte // the line end of the last complete line, not yet known to be the body's
	heldOK  bool
	trailer []byte
	term    term
	done    bool
	err     error
	rawLit  int64 // literal bytes a codec wrote for this body
}

// Read fills p as far as the input allows: a store writes what each Read
// returns, and a line's worth (57 bytes of base64) per write would cost a
// system call each.
func (r *bodyReader) Read(p []byte) (int, error) {
	if r.off > 0 { // keep what is left at the front: out stays as small as p
		n := copy(r.out, r.out[r.off:])
		r.out, r.off = r.out[:n], 0
	}
	for len(r.out)-r.off < len(p) && !r.done && r.err == nil {
		r.step()
	}
	if r.off == len(r.out) {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	n := copy(p, r.out[r.off:])
	r.off += n
	return n, nil
}

func (r *bodyReader) emit(b []byte) { r.out = append(r.out, b...) }

// litRaw writes original bytes of this body to the literal stream; the
// body's operations account for them (rawLit).
func (r *bodyReader) litRaw(b []byte) {
	if len(b) == 0 || r.err != nil {
		return
	}
	if _, err := r.c.lits.Write(b); err != nil {
		r.err = err
		return
	}
	r.rawLit += int64(len(b))
}

func (r *bodyReader) step() {
	f, ok, err := r.c.next()
	if err != nil {
		r.err = err
		return
	}
	if !ok {
		if r.heldOK {
			r.codec.endLine(r.held, true)
		} else {
			r.codec.endLine(nil, true)
		}
		r.finish(termEOF)
		return
	}
	if _, _, d := delim(f, r.stack); d {
		r.c.unread(f)
		r.codec.endLine(nil, true)
		if r.heldOK {
			r.trailer = append([]byte(nil), r.held...)
		}
		r.finish(termDelim)
		return
	}
	if r.heldOK {
		r.codec.endLine(r.held, false)
		r.heldOK = false
	}
	if !f.end {
		r.codec.write(f.b)
		return
	}
	content, eol := splitEOL(f.b)
	r.codec.write(content)
	if len(eol) > 0 {
		r.held = append(r.held[:0], eol...)
		r.heldOK = true
	}
}

func (r *bodyReader) finish(t term) {
	r.codec.end()
	r.term = t
	r.done = true
}

// idcodec: the identity encodings. The resource is the body as sent.
type idcodec struct {
	r *bodyReader
	n int64
}

func (c *idcodec) write(b []byte) { c.r.emit(b); c.n += int64(len(b)) }
func (c *idcodec) endLine(eol []byte, _ bool) {
	c.r.emit(eol)
	c.n += int64(len(eol))
}
func (c *idcodec) end()   {}
func (c *idcodec) close() {}
func (c *idcodec) ops() ([]Op, error) {
	if c.n == 0 {
		return nil, nil
	}
	return []Op{{Op: OpCopy, N: c.n}}, nil
}

// b64codec decodes base64. While every line is what an encoder writing
// lines of one length would write, the body is re-encodable (OpBase64); from
// the first line that is not, the rest is decoded leniently and kept as
// literal text too (OpSkip, OpLit), so a large attachment from an ordinary
// encoder is never stored twice.
type b64codec struct {
	r      *bodyReader
	line   []byte
	length int    // characters per line, from the first line
	eol    string // line end, from the first line that has one
	short  bool   // a line shorter than length, or padded: it must be the last
	n      int64  // decoded bytes of the regular lines
	final  bool   // the last regular line had a line end
	raw    bool
	rawN   int64
	quad   [4]byte
	qn     int
	dec    [maxLine]byte
}

func isB64(ch byte) bool {
	return 'A' <= ch && ch <= 'Z' || 'a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' || ch == '+' || ch == '/'
}

func (c *b64codec) write(b []byte) {
	if !c.raw && len(c.line)+len(b) > maxLine {
		c.toRaw()
	}
	if c.raw {
		c.r.litRaw(b)
		c.lenient(b)
		return
	}
	c.line = append(c.line, b...)
}

func (c *b64codec) toRaw() {
	c.raw = true
	c.r.litRaw(c.line)
	c.lenient(c.line)
	c.line = c.line[:0]
}

func (c *b64codec) endLine(eol []byte, last bool) {
	if !c.raw {
		if len(c.line) == 0 && last {
			return
		}
		if n, ok := c.regular(c.line, eol); ok {
			c.r.emit(c.dec[:n])
			c.n += int64(n)
			c.final = len(eol) > 0
			c.line = c.line[:0]
			return
		}
		c.toRaw()
	}
	c.r.litRaw(eol)
}

// regular decodes a line if it is what the encoder of the lines before it
// would write next.
func (c *b64codec) regular(ln, eol []byte) (int, bool) {
	if c.short || len(ln) == 0 || len(ln)%4 != 0 || (c.length > 0 && len(ln) > c.length) {
		return 0, false
	}
	if len(eol) > 0 && c.eol != "" && string(eol) != c.eol {
		return 0, false
	}
	n, err := base64.StdEncoding.Strict().Decode(c.dec[:], ln)
	if err != nil {
		return 0, false
	}
	var enc [maxLine + 3]byte
	base64.StdEncoding.Encode(enc[:], c.dec[:n])
	if !bytes.Equal(enc[:len(ln)], ln) || base64.StdEncoding.EncodedLen(n) != len(ln) {
		return 0, false
	}
	if c.length == 0 {
		c.length = len(ln)
	}
	if c.eol == "" && len(eol) > 0 {
		c.eol = string(eol)
	}
	if len(ln) < c.length || ln[len(ln)-1] == '=' {
		c.short = true
	}
	return n, true
}

// lenient decodes what it can, as RFC 2045 §6.8 asks of a decoder: characters
// outside the alphabet are ignored, a broken group is dropped.
func (c *b64codec) lenient(b []byte) {
	for _, ch := range b {
		if !isB64(ch) && ch != '=' {
			continue
		}
		c.quad[c.qn] = ch
		c.qn++
		if c.qn == 4 {
			var d [3]byte
			if n, err := base64.StdEncoding.Decode(d[:], c.quad[:]); err == nil {
				c.r.emit(d[:n])
				c.rawN += int64(n)
			}
			c.qn = 0
		}
	}
}

func (c *b64codec) end() {
	if !c.raw || c.qn < 2 {
		return
	}
	q := bytes.TrimRight(c.quad[:c.qn], "=")
	var d [3]byte
	if n, err := base64.RawStdEncoding.Decode(d[:], q); err == nil {
		c.r.emit(d[:n])
		c.rawN += int64(n)
	}
}

func (c *b64codec) close() {}

func (c *b64codec) ops() ([]Op, error) {
	var ops []Op
	if c.n > 0 {
		eol := c.eol
		if eol == "" {
			eol = "\r\n" // one line and no line end: never written
		}
		ops = append(ops, Op{Op: OpBase64, N: c.n, Line: c.length, EOL: eol, Final: c.final})
	}
	if c.rawN > 0 {
		ops = append(ops, Op{Op: OpSkip, N: c.rawN})
	}
	return ops, nil
}

// qpcodec decodes quoted-printable. Encoders differ in where they break
// lines and what they escape, so the body's text is spooled as it comes,
// and the decoded bytes are re-encoded as they go (Go's quotedprintable
// Writer, the one encoder OpQP names) and compared with it: equal, the text
// is dropped; not, it is kept as literal bytes. Quoted-printable is text,
// small nearly always.
type qpcodec struct {
	r    *bodyReader
	text spool
	cmp  *spoolCompare
	enc  *quotedprintable.Writer
	held []byte
	n    int64
	same bool
}

func newQPCodec(r *bodyReader, dir string) *qpcodec {
	c := &qpcodec{r: r, text: spool{dir: dir}}
	c.cmp = &spoolCompare{s: &c.text}
	c.enc = quotedprintable.NewWriter(c.cmp)
	return c
}

// maxQPHeld bounds what a long line holds back (trailing white space, a
// split escape); beyond it the text is decoded as it is, which at worst
// makes the body literal.
const maxQPHeld = 4096

func (c *qpcodec) spoolText(b []byte) {
	if _, err := c.text.Write(b); err != nil && c.r.err == nil {
		c.r.err = err
	}
}

func (c *qpcodec) write(b []byte) {
	c.spoolText(b)
	c.held = append(c.held, b...)
	k := len(c.held)
	for k > 0 && (c.held[k-1] == ' ' || c.held[k-1] == '\t') {
		k--
	}
	switch {
	case k >= 1 && c.held[k-1] == '=':
		k--
	case k >= 2 && c.held[k-2] == '=':
		k -= 2
	}
	if len(c.held)-k > maxQPHeld {
		k = len(c.held)
	}
	c.decode(c.held[:k])
	c.held = append(c.held[:0], c.held[k:]...)
}

func (c *qpcodec) endLine(eol []byte, _ bool) {
	c.spoolText(eol)
	ln := bytes.TrimRight(c.held, " \t")
	if bytes.HasSuffix(ln, []byte("=")) {
		c.decode(ln[:len(ln)-1])
	} else {
		c.decode(ln)
		c.out(eol)
	}
	c.held = c.held[:0]
}

func unhex(ch byte) (byte, bool) {
	switch {
	case '0' <= ch && ch <= '9':
		return ch - '0', true
	case 'A' <= ch && ch <= 'F':
		return ch - 'A' + 10, true
	case 'a' <= ch && ch <= 'f':
		return ch - 'a' + 10, true
	}
	return 0, false
}

func (c *qpcodec) decode(b []byte) {
	start := 0
	for i := 0; i < len(b); i++ {
		if b[i] != '=' || i+2 >= len(b) {
			continue
		}
		hi, ok1 := unhex(b[i+1])
		lo, ok2 := unhex(b[i+2])
		if !ok1 || !ok2 {
			continue
		}
		c.out(b[start:i])
		c.out([]byte{hi<<4 | lo})
		i += 2
		start = i + 1
	}
	c.out(b[start:])
}

func (c *qpcodec) out(b []byte) {
	if len(b) == 0 {
		return
	}
	c.r.emit(b)
	c.n += int64(len(b))
	_, _ = c.enc.Write(b) // spoolCompare never fails; a mismatch is recorded
}

func (c *qpcodec) end() {
	_ = c.enc.Close()
	c.same = !c.cmp.differ && c.cmp.off == c.text.Len()
}

func (c *qpcodec) ops() ([]Op, error) {
	if c.same {
		if c.n == 0 {
			return nil, nil
		}
		return []Op{{Op: OpQP, N: c.n}}, nil
	}
	var ops []Op
	if c.n > 0 {
		ops = append(ops, Op{Op: OpSkip, N: c.n})
	}
	if _, err := io.Copy(writerFunc(func(p []byte) (int, error) {
		c.r.litRaw(p)
		return len(p), c.r.err
	}), c.text.Reader()); err != nil {
		return nil, fmt.Errorf("mimeconv: keeping a quoted-printable text: %w", err)
	}
	return ops, nil
}

func (c *qpcodec) close() { _ = c.text.Close() }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// spoolCompare compares what is written to it with a spool's bytes from the
// start. The spool is always ahead: a body's text is spooled before it is
// decoded, and an encoder writes no more than it was given plus its line
// breaks, which are in the text when it is the same.
type spoolCompare struct {
	s      *spool
	off    int64
	differ bool
	buf    []byte
}

func (w *spoolCompare) Write(p []byte) (int, error) {
	if w.differ {
		return len(p), nil
	}
	if cap(w.buf) < len(p) {
		w.buf = make([]byte, len(p))
	}
	b := w.buf[:len(p)]
	n, _ := w.s.ReadAt(b, w.off)
	if n < len(p) || !bytes.Equal(b, p) {
		w.differ = true
		return len(p), nil
	}
	w.off += int64(n)
	return len(p), nil
}
