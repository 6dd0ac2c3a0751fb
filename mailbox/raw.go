package mailbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/mimeconv"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// maxRecord bounds a record read back (mimeconv keeps larger literal
// streams in a resource of their own, so a record is operations only).
const maxRecord = 64 << 20

// Raw implements API: the message as RFC 5322 bytes. A message that came by
// SMTP (X-MIME-Record) is rendered from its record, byte for byte as it
// came; any other is composed (mimeconv.Compose), with its Bcc only in the
// author's own copies (sent, drafts). The bytes are written as they are read
// (a pipe): constant memory whatever the attachments.
func (s *Service) Raw(ctx context.Context, id string) (io.ReadCloser, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return nil, err
	}
	row, err := s.cfg.Meta.Message(ctx, p.UserID, id)
	if err != nil {
		return nil, storeErr(err, "reading the message failed")
	}
	switch row.Status {
	case meta.StatusFetching:
		return nil, errs.E(errs.Conflict, "not_ready", "the message's resources are still being fetched")
	case meta.StatusFailed:
		return nil, errs.E(errs.Conflict, "resource_unavailable", "the message's resources could not be fetched: %s", row.StatusReason)
	}
	m, err := placeholder.Parse(row.Placeholder, placeholder.Limits{})
	if err != nil {
		return nil, internal(err, "reading the stored placeholder failed")
	}
	var write func(io.Writer) error
	if v, ok := m.Header.Lookup(HMIMERecord); ok {
		rec, err := s.record(ctx, row, v.String())
		if err != nil {
			return nil, err
		}
		write = func(w io.Writer) error { return mimeconv.Render(ctx, w, rec, s.cfg.Resources) }
	} else {
		opt := mimeconv.ComposeOptions{KeepBcc: row.Folder == meta.Sent || row.Folder == meta.Drafts}
		write = func(w io.Writer) error { return mimeconv.Compose(ctx, w, m, s.cfg.Resources, opt) }
	}
	pr, pw := io.Pipe()
	go func() {
		err := write(pw)
		if err != nil {
			s.log.Error("writing a message as RFC 5322", "id", id, "err", err)
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// record reads the mimeconv record a message names, which must be one of
// the resources the message references.
func (s *Service) record(ctx context.Context, row meta.Message, cid string) (*mimeconv.Record, error) {
	id, err := resource.ParseID(strings.TrimSuffix(strings.TrimPrefix(cid, "<"), ">"))
	if err != nil {
		return nil, internal(err, "the message names a malformed record")
	}
	referenced := false
	for _, r := range row.Refs {
		referenced = referenced || r.ID == id
	}
	if !referenced {
		return nil, internal(errors.New("record not referenced"), "the message's record is not among its resources")
	}
	o, err := s.cfg.Resources.Open(ctx, id)
	if err != nil {
		return nil, internal(err, "opening the message's record failed")
	}
	defer o.Close()
	data, err := io.ReadAll(io.LimitReader(o, maxRecord+1))
	if err != nil {
		return nil, internal(err, "reading the message's record failed")
	}
	if len(data) > maxRecord {
		return nil, internal(fmt.Errorf("%d bytes", len(data)), "the message's record is too large")
	}
	rec, err := mimeconv.ParseRecord(data)
	if err != nil {
		return nil, internal(err, "the message's record is damaged")
	}
	return rec, nil
}
