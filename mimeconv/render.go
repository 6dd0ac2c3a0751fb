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
	"mime/quotedprintable"

	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// ErrMismatch is returned by Render when what it wrote is not the original
// (the record or a resource is not what Convert stored). The bytes written
// by then are not the message; a caller streaming them (SMTP, IMAP) must
// abort the transfer.
var ErrMismatch = errors.New("mimeconv: rendered bytes differ from the original")

// Render writes the original message that rec records, reading its
// resources from f, in constant memory.
func Render(ctx context.Context, w io.Writer, rec *Record, f resource.Fetcher) error {
	if err := rec.Check(); err != nil {
		return err
	}
	var lits io.Reader = bytes.NewReader(rec.Lits)
	if rec.LitsID != "" {
		o, err := f.Open(ctx, rec.LitsID)
		if err != nil {
			return fmt.Errorf("mimeconv: opening the literal stream: %w", err)
		}
		defer o.Close()
		lits = o
	}
	h := sha256.New()
	cw := &countWriter{w: w, h: h}
	bw := bufio.NewWriterSize(cw, 64<<10)
	var cur resource.Object
	defer func() {
		if cur != nil {
			cur.Close()
		}
	}()
	for i, op := range rec.Ops {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		switch op.Op {
		case OpLit:
			err = copyN(bw, lits, op.N, "the literal stream")
		case OpOpen:
			if cur != nil {
				cur.Close()
			}
			cur, err = f.Open(ctx, op.ID)
			if err != nil {
				cur = nil
				err = fmt.Errorf("opening resource %s: %w", op.ID, err)
			}
		case OpCopy:
			err = copyN(bw, cur, op.N, "a resource")
		case OpSkip:
			err = copyN(io.Discard, cur, op.N, "a resource")
		case OpQP:
			qw := quotedprintable.NewWriter(bw)
			if err = copyN(qw, cur, op.N, "a resource"); err == nil {
				err = qw.Close()
			}
		case OpBase64:
			err = writeBase64(bw, cur, op)
		}
		if err != nil {
			return fmt.Errorf("mimeconv: rendering, operation %d (%s): %w", i, op.Op, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if cw.n != rec.Size || base64.RawURLEncoding.EncodeToString(h.Sum(nil)) != rec.SHA256 {
		return ErrMismatch
	}
	return nil
}

type countWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

func copyN(w io.Writer, r io.Reader, n int64, what string) error {
	got, err := io.CopyN(w, r, n)
	if err == io.EOF {
		return fmt.Errorf("%s ended after %d of %d bytes: %w", what, got, n, ErrMismatch)
	}
	return err
}

// writeBase64 writes op.N bytes of r base64-encoded in lines of op.Line
// characters.
func writeBase64(w io.Writer, r io.Reader, op Op) error {
	per := op.Line / 4 * 3
	in := make([]byte, per)
	out := make([]byte, op.Line)
	eol := []byte(op.EOL)
	for left, first := op.N, true; left > 0; first = false {
		k := int64(per)
		if left < k {
			k = left
		}
		if _, err := io.ReadFull(r, in[:k]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("a resource ended early: %w", ErrMismatch)
			}
			return err
		}
		if !first {
			if _, err := w.Write(eol); err != nil {
				return err
			}
		}
		n := base64.StdEncoding.EncodedLen(int(k))
		base64.StdEncoding.Encode(out, in[:k])
		if _, err := w.Write(out[:n]); err != nil {
			return err
		}
		left -= k
	}
	if op.Final {
		_, err := w.Write(eol)
		return err
	}
	return nil
}

// fallback is the placeholder of a message whose converted tree breaks a
// placeholder limit that the converter could not keep to (the document's
// size, above all): the whole message, rendered from what Convert stored,
// becomes one message/rfc822 leaf, and the record one copy of it. The
// decoded resources stored before stay unreferenced (collectable).
func (c *conv) fallback(res *Result) (*Result, error) {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(Render(c.ctx, pw, res.Record, c.store))
	}()
	info, err := c.store.Put(c.ctx, pr, resource.PutOptions{Size: res.Record.Size})
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		return nil, fmt.Errorf("mimeconv: storing the message whole: %w", err)
	}
	leaf, err := placeholder.NewLeaf(info.ID, info.Size, "message/rfc822", "", "")
	if err != nil {
		return nil, err
	}
	m := &placeholder.Message{Parts: []placeholder.Part{leaf}}
	for _, n := range []string{placeholder.HFrom, placeholder.HTo, placeholder.HCc, placeholder.HSubject,
		placeholder.HDate, placeholder.HMessageID, placeholder.HInReplyTo, placeholder.HThreadID} {
		if v, ok := res.Message.Header.Lookup(n); ok && placeholder.CheckField(n, v, c.lim) == nil {
			m.Header.Set(n, v)
		}
	}
	m.Header.SetString(placeholder.HContentType, "multipart/mixed")
	if err := m.Validate(c.lim); err != nil {
		return nil, fmt.Errorf("mimeconv: the fallback placeholder: %w", err)
	}
	rec := &Record{Version: RecordVersion, Size: res.Record.Size, SHA256: res.Record.SHA256,
		Ops: []Op{{Op: OpOpen, ID: info.ID}}}
	if info.Size > 0 {
		rec.Ops = append(rec.Ops, Op{Op: OpCopy, N: info.Size})
	}
	return &Result{Message: m, Record: rec, Resources: []resource.Info{info}}, nil
}
