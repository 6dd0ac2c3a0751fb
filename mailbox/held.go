package mailbox

import (
	"context"
	"errors"
	"io"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/resource"
)

// OpenHeld opens a resource the user in the context holds (docs/PROTOCOL.md
// §8.4: they uploaded it and the upload has not expired, or a message of
// theirs references it), by its Content-ID alone. It is what JMAP's blob
// download needs (docs/PROTOCOL.md §14: a blobId is a Content-ID): holding
// is already what lets the user reference the bytes in a draft, and so
// read them back, so this grants nothing a Content-ID did not. A resource
// the user does not hold answers not_found, like one that does not exist.
// The caller closes the reader.
func (s *Service) OpenHeld(ctx context.Context, cid resource.ID) (io.ReadCloser, Upload, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return nil, Upload{}, err
	}
	notFound := errs.E(errs.NotFound, "not_found", "you hold no resource <%s>", cid)
	ok, err := s.cfg.Meta.Holds(ctx, p.UserID, cid)
	if err != nil {
		return nil, Upload{}, internal(err, "checking the resource failed")
	}
	if !ok {
		return nil, Upload{}, notFound
	}
	obj, err := s.cfg.Resources.Open(ctx, cid)
	if errors.Is(err, resource.ErrNotFound) {
		return nil, Upload{}, notFound // referenced, not yet pulled
	} else if err != nil {
		return nil, Upload{}, internal(err, "opening the resource failed")
	}
	info, err := s.cfg.Resources.Stat(ctx, cid)
	if err != nil {
		obj.Close()
		return nil, Upload{}, internal(err, "checking the resource failed")
	}
	return obj, Upload{ContentID: cid, Size: info.Size}, nil
}
