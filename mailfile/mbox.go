package mailfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// readBuffer is the reader's buffer: a line longer than this arrives in
// pieces. The quoting rules look at a line's first readBuffer bytes only,
// the writer's as the reader's, so the two agree on any line.
const readBuffer = 64 << 10

// maxFromLine bounds the From_ line text kept (the rest is read and
// dropped).
const maxFromLine = 1000

// Variant is an mbox dialect: how lines that look like From_ lines are
// quoted in the file.
type Variant int

const (
	// MboxRD: `>*From ` lines are quoted with one more '>' (the default,
	// and what MboxWriter writes).
	MboxRD Variant = iota
	// MboxO: only `From ` lines were quoted (to `>From `); a line that was
	// `>From ` already cannot be told apart, and reads as `From `.
	MboxO
)

// ParseVariant reads "mboxrd" or "mboxo".
func ParseVariant(s string) (Variant, error) {
	switch strings.ToLower(s) {
	case "mboxrd", "":
		return MboxRD, nil
	case "mboxo":
		return MboxO, nil
	}
	return 0, fmt.Errorf("mailfile: unknown mbox variant %q (mboxrd or mboxo)", s)
}

// ErrNotMbox is returned by Next when the input does not begin with a From_
// line (leading blank lines aside).
var ErrNotMbox = errors.New("mailfile: not an mbox file (no From_ line at the start)")

// MboxReader reads the messages of an mbox file in order. It is not safe
// for concurrent use.
type MboxReader struct {
	br  *bufio.Reader
	v   Variant
	off int64 // bytes taken from br
	// Tee, when set, receives every byte of the input up to the start of
	// the message Next returns next, in order: after a message is read to
	// its end, it has had exactly the bytes before Message.End (a digest
	// of a file's prefix, for resuming).
	Tee io.Writer

	started bool
	from    []byte // the pending From_ line (its text), once the previous message ended
	fromOff int64  // where it begins
	fromRaw []byte // its raw first fragment, not yet given to Tee
	// fromPartial: the pending From_ line is longer than its fragment.
	fromPartial bool
	cur         *MboxMessage
	err         error
}

// NewMboxReader reads an mbox file from r, of variant v. base is the offset
// in the file at which r begins (0, or a Message.End of an earlier reading,
// to resume there): offsets are reported from it.
func NewMboxReader(r io.Reader, v Variant, base int64) *MboxReader {
	return &MboxReader{br: bufio.NewReaderSize(r, readBuffer), v: v, off: base}
}

// MboxMessage is one message of an mbox file: an io.Reader of its bytes,
// unquoted, without the From_ line and without the line end the writer
// added. It is valid until the next call of Next.
type MboxMessage struct {
	// From is the From_ line's text after "From " (envelope sender and
	// date, as the writer put them), without its line end; at most 1000
	// bytes of it.
	From string
	// Offset is where the From_ line begins in the file.
	Offset int64

	r    *MboxReader
	pre  [2]byte // a held line end, to give before pend
	npre int
	pend []byte
	held [2]byte // the last line end read, given only if another line follows
	nh   int
	cr   bool // the last fragment ended (not a line) with '\r', held back
	// lineStart: the next fragment begins a line.
	lineStart bool
	done      bool
	size      int64
	end       int64
	err       error
}

// Next returns the next message, or io.EOF after the last. What the
// previous message's reader did not read is skipped. An input that is not
// an mbox file gives ErrNotMbox; read errors are returned wrapped.
func (r *MboxReader) Next() (*MboxMessage, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.cur != nil && !r.cur.done {
		if _, err := io.Copy(io.Discard, r.cur); err != nil {
			r.err = err
			return nil, err
		}
	}
	r.cur = nil
	if !r.started {
		r.started = true
		if err := r.first(); err != nil {
			r.err = err
			return nil, err
		}
	}
	if r.from == nil {
		r.err = io.EOF
		return nil, io.EOF
	}
	if r.Tee != nil && r.fromRaw != nil {
		if _, err := r.Tee.Write(r.fromRaw); err != nil {
			r.err = fmt.Errorf("mailfile: %w", err)
			return nil, r.err
		}
	}
	r.fromRaw = r.fromRaw[:0]
	m := &MboxMessage{From: string(r.from), Offset: r.fromOff, r: r, lineStart: true}
	r.from = nil
	// The rest of a From_ line longer than the buffer.
	if err := r.finishFromLine(); err != nil {
		r.err = err
		return nil, err
	}
	r.cur = m
	return m, nil
}

// fragment reads the next piece of input: a line, or the first readBuffer
// bytes of a longer one (full false). The slice is valid until the next
// read.
func (r *MboxReader) fragment() (b []byte, full bool, err error) {
	b, err = r.br.ReadSlice('\n')
	r.off += int64(len(b))
	switch {
	case err == nil:
		return b, true, nil
	case errors.Is(err, bufio.ErrBufferFull):
		return b, false, nil
	case errors.Is(err, io.EOF):
		if len(b) == 0 {
			return nil, false, io.EOF
		}
		return b, true, nil
	}
	return b, false, fmt.Errorf("mailfile: reading the mbox: %w", err)
}

// first reads the first From_ line, after any blank lines.
func (r *MboxReader) first() error {
	for {
		start := r.off
		b, full, err := r.fragment()
		if errors.Is(err, io.EOF) {
			return nil // an empty file: no message
		}
		if err != nil {
			return err
		}
		if full && (string(b) == "\n" || string(b) == "\r\n") {
			if r.Tee != nil {
				if _, err := r.Tee.Write(b); err != nil {
					return fmt.Errorf("mailfile: %w", err)
				}
			}
			continue
		}
		if !bytes.HasPrefix(b, []byte("From ")) {
			return ErrNotMbox
		}
		r.setFrom(b, full, start)
		return nil
	}
}

// setFrom keeps a From_ line's first fragment as the pending one.
func (r *MboxReader) setFrom(b []byte, full bool, start int64) {
	r.fromOff = start
	r.fromRaw = append(r.fromRaw[:0], b...)
	t := bytes.TrimPrefix(b, []byte("From "))
	t = bytes.TrimRight(t, "\r\n")
	if len(t) > maxFromLine {
		t = t[:maxFromLine]
	}
	r.from = append([]byte{}, t...)
	r.fromPartial = !full
}

// finishFromLine reads the rest of a pending From_ line that was longer
// than the buffer.
func (r *MboxReader) finishFromLine() error {
	for r.fromPartial {
		b, full, err := r.fragment()
		if errors.Is(err, io.EOF) {
			r.fromPartial = false
			return nil
		}
		if err != nil {
			return err
		}
		if r.Tee != nil {
			if _, err := r.Tee.Write(b); err != nil {
				return fmt.Errorf("mailfile: %w", err)
			}
		}
		r.fromPartial = !full
	}
	return nil
}

// quoted reports whether a line's first fragment is a quoted From_ line of
// variant v (whose first '>' the reader takes away).
func quoted(b []byte, v Variant) bool {
	if v == MboxO {
		return bytes.HasPrefix(b, []byte(">From "))
	}
	i := 0
	for i < len(b) && b[i] == '>' {
		i++
	}
	return i > 0 && bytes.HasPrefix(b[i:], []byte("From "))
}

// Read implements io.Reader.
func (m *MboxMessage) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if m.npre > 0 {
			c := copy(p[n:], m.pre[:m.npre])
			copy(m.pre[:], m.pre[c:m.npre])
			m.npre -= c
			n += c
			continue
		}
		if len(m.pend) > 0 {
			c := copy(p[n:], m.pend)
			m.pend = m.pend[c:]
			n += c
			continue
		}
		if m.done {
			break
		}
		// What fill's fragment replaces was copied out already.
		if err := m.fill(); err != nil {
			m.err = err
			m.done = true
			m.r.err = err
			return n, err
		}
	}
	m.size += int64(n)
	if n == 0 && m.done {
		if m.err != nil {
			return 0, m.err
		}
		return 0, io.EOF
	}
	return n, nil
}

// fill reads the next fragment into pre and pend, or ends the message.
func (m *MboxMessage) fill() error {
	r := m.r
	start := r.off
	b, full, err := r.fragment()
	if errors.Is(err, io.EOF) {
		// The end of the file: the held line end was the writer's; a
		// held '\r' was the message's.
		m.end = r.off
		if m.cr {
			m.pre[0], m.npre, m.cr = '\r', 1, false
		}
		m.done = true
		return nil
	}
	if err != nil {
		return err
	}
	if m.lineStart {
		if bytes.HasPrefix(b, []byte("From ")) {
			// The next message: the held line end was the writer's.
			r.setFrom(b, full, start)
			m.end = start
			m.done = true
			m.nh = 0
			return nil
		}
		if quoted(b, r.v) {
			if r.Tee != nil {
				if _, err := r.Tee.Write(b[:1]); err != nil {
					return fmt.Errorf("mailfile: %w", err)
				}
			}
			b = b[1:]
		}
	}
	if r.Tee != nil {
		if _, err := r.Tee.Write(b); err != nil {
			return fmt.Errorf("mailfile: %w", err)
		}
	}
	// What was held goes out before this fragment.
	m.npre = copy(m.pre[:], m.held[:m.nh])
	m.nh = 0
	if m.cr {
		if full && len(b) == 1 { // "\r" + "\n": the line end split between fragments
			m.held[0], m.held[1], m.nh = '\r', '\n', 2
			m.cr = false
			m.pend = b[:0]
			m.lineStart = true
			return nil
		}
		m.pre[m.npre] = '\r'
		m.npre++
		m.cr = false
	}
	if full && len(b) > 0 && b[len(b)-1] == '\n' {
		k := 1
		if len(b) > 1 && b[len(b)-2] == '\r' {
			k = 2
		}
		copy(m.held[:], b[len(b)-k:])
		m.nh = k
		b = b[:len(b)-k]
	} else if !full && len(b) > 0 && b[len(b)-1] == '\r' {
		m.cr = true
		b = b[:len(b)-1]
	}
	m.lineStart = full
	m.pend = b
	return nil
}

// Size is the number of bytes read from the message so far.
func (m *MboxMessage) Size() int64 { return m.size }

// End is where the message ends in the file (the offset of the next From_
// line, or the file's size), once Read returned io.EOF.
func (m *MboxMessage) End() int64 { return m.end }

// ErrUnwritable is the writer's refusal of the one line mboxrd cannot hold
// within the reader's window: 65,531 '>' followed by "From " (the reader
// would take a '>' away whether or not it was quoted).
var ErrUnwritable = errors.New("mailfile: a line of the message cannot be written to an mbox file exactly")

// MboxWriter writes messages to an mbox file (mboxrd). It buffers: call
// Flush after the last message.
type MboxWriter struct {
	w   *bufio.Writer
	cur *mboxMessageWriter
}

// NewMboxWriter writes an mbox file to w.
func NewMboxWriter(w io.Writer) *MboxWriter {
	return &MboxWriter{w: bufio.NewWriterSize(w, readBuffer)}
}

// asctime is the From_ line's date (RFC 4155: the format of asctime, UTC).
const asctime = "Mon Jan _2 15:04:05 2006"

// FromLine is the From_ line text of a message from sender at t: sender
// without spaces or controls (MAILER-DAEMON if empty), t in UTC.
func FromLine(sender string, t time.Time) string {
	s := strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f {
			return -1
		}
		return r
	}, sender)
	if s == "" {
		s = "MAILER-DAEMON"
	}
	if len(s) > 320 {
		s = s[:320]
	}
	return s + " " + t.UTC().Format(asctime)
}

// Message starts a message whose From_ line text is from (FromLine); the
// message's bytes are written to the returned writer, and Close ends it.
// A message not closed is closed by the next Message or by Flush.
func (w *MboxWriter) Message(from string) (io.WriteCloser, error) {
	if err := w.closeCur(); err != nil {
		return nil, err
	}
	from = strings.NewReplacer("\r", "", "\n", "").Replace(from)
	if _, err := w.w.WriteString("From " + from + "\n"); err != nil {
		return nil, err
	}
	w.cur = &mboxMessageWriter{w: w.w, bol: true}
	return w.cur, nil
}

func (w *MboxWriter) closeCur() error {
	if w.cur == nil {
		return nil
	}
	err := w.cur.Close()
	w.cur = nil
	return err
}

// Flush ends the last message and writes what is buffered.
func (w *MboxWriter) Flush() error {
	if err := w.closeCur(); err != nil {
		return err
	}
	return w.w.Flush()
}

// mboxMessageWriter quotes the lines of one message that read as From_
// lines (mboxrd), and ends the message with the separator line end.
type mboxMessageWriter struct {
	w   *bufio.Writer
	bol bool // at the start of a line
	// prefix is the line's start so far while inPrefix: it may still be
	// `>*From `.
	prefix   []byte
	inPrefix bool
	last     byte // the last byte of the message
	closed   bool
}

// Write implements io.Writer.
func (q *mboxMessageWriter) Write(p []byte) (int, error) {
	if q.closed {
		return 0, errors.New("mailfile: write to a closed message")
	}
	for i := 0; i < len(p); {
		if q.bol || q.inPrefix {
			c := p[i]
			q.bol, q.inPrefix = false, true
			q.prefix = append(q.prefix, c)
			i++
			switch st := matchFrom(q.prefix); st {
			case matchMaybe:
				if len(q.prefix) <= readBuffer {
					continue
				}
				// Longer than the reader looks: never unquoted, so
				// not quoted.
				if err := q.flushPrefix(false); err != nil {
					return i, err
				}
			case matchNo:
				if err := q.flushPrefix(false); err != nil {
					return i, err
				}
			case matchYes:
				// The reader unquotes a line whose `>+From ` lies
				// within its first readBuffer bytes; at exactly
				// readBuffer bytes unquoted, the line could be
				// written neither way.
				if len(q.prefix) == readBuffer {
					return i, ErrUnwritable
				}
				if err := q.flushPrefix(true); err != nil {
					return i, err
				}
			}
			if c == '\n' {
				q.bol = true
			}
			continue
		}
		j := bytes.IndexByte(p[i:], '\n')
		end := len(p)
		if j >= 0 {
			end = i + j + 1
		}
		if _, err := q.w.Write(p[i:end]); err != nil {
			return i, err
		}
		q.last = p[end-1]
		i = end
		if j >= 0 {
			q.bol = true
		}
	}
	return len(p), nil
}

func (q *mboxMessageWriter) flushPrefix(quote bool) error {
	if quote {
		if err := q.w.WriteByte('>'); err != nil {
			return err
		}
	}
	if _, err := q.w.Write(q.prefix); err != nil {
		return err
	}
	q.last = q.prefix[len(q.prefix)-1]
	q.prefix, q.inPrefix = q.prefix[:0], false
	return nil
}

type match int

const (
	matchNo match = iota
	matchMaybe
	matchYes
)

// matchFrom says whether a line starting with b is `>*From `.
func matchFrom(b []byte) match {
	i := 0
	for i < len(b) && b[i] == '>' {
		i++
	}
	rest := b[i:]
	const from = "From "
	if len(rest) >= len(from) {
		if string(rest[:len(from)]) == from {
			return matchYes
		}
		return matchNo
	}
	if from[:len(rest)] == string(rest) {
		return matchMaybe
	}
	return matchNo
}

// Close ends the message with the separator: one line end, which the
// reader takes away again ("\r\n" after a message ending with '\r', so
// that the '\r' stays the message's).
func (q *mboxMessageWriter) Close() error {
	if q.closed {
		return nil
	}
	q.closed = true
	if q.inPrefix {
		if err := q.flushPrefix(false); err != nil {
			return err
		}
	}
	sep := "\n"
	if q.last == '\r' {
		sep = "\r\n"
	}
	_, err := q.w.WriteString(sep)
	return err
}
