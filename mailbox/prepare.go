package mailbox

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// No file I/O, network or signing inside a write transaction: it holds the
// metadata store's write lock (SQLite has one writer at a time), so that
// every millisecond in it is a millisecond every other writer of the domain
// waits. What a transaction needs from outside the store, the sizes of the
// resources a message names (a stat of the resource store) and the send
// grant of a message for other domains (a signature), is obtained before
// it, in a prepared, and the transaction only reads it.
//
// Reading a stat taken before the transaction is as safe as taking it
// inside: the resource store is not transactional, so a stat inside told
// no more. A resource's size never changes (it is named by its digest); it
// disappears only by CollectGarbage, which removes only a resource that
// nothing references, and the transaction checks that the user holds it
// (meta.Reader.Holds: an upload row or a message of theirs, either of which
// makes it referenced). The window between garbage collection's last check
// and its removal is the same with the stat inside or outside.

// errUnprepared fails a transaction that needs something its prepared
// lacks (the draft changed between the look before and the transaction, or
// a rule forwards to another domain): Service.update obtains it and runs
// the transaction again.
var errUnprepared = errors.New("mailbox: the transaction needs what was not prepared")

// maxPrepare bounds the runs of one transaction by Service.update.
const maxPrepare = 4

// prepared is what write transactions need from outside the metadata store,
// obtained before them. Not safe for concurrent use; one operation's.
type prepared struct {
	s      *Service
	sizes  map[resource.ID]sized
	grants map[grantFor]string
	ids    map[string]string // Message-IDs of messages a transaction makes, by what they are

	wantSize  []resource.ID
	wantGrant []grantFor
}

// sized is a resource's size as the resource store said, or its error
// (resource.ErrNotFound when it is not stored).
type sized struct {
	size int64
	err  error
}

// grantFor names a send grant: an author's message.
type grantFor struct{ author, messageID string }

func (s *Service) prepare() *prepared {
	return &prepared{s: s, sizes: map[resource.ID]sized{}, grants: map[grantFor]string{}, ids: map[string]string{}}
}

// size returns the size of a stored resource (resource.ErrNotFound when it
// is not stored), or errUnprepared when it was not stat'ed before.
func (pre *prepared) size(id resource.ID) (int64, error) {
	r, ok := pre.sizes[id]
	if !ok {
		pre.wantSize = append(pre.wantSize, id)
		return 0, errUnprepared
	}
	return r.size, r.err
}

// grant returns the send grant of an author's message, or errUnprepared
// when it was not signed before.
func (pre *prepared) grant(author, messageID string) (string, error) {
	k := grantFor{author, messageID}
	g, ok := pre.grants[k]
	if !ok {
		pre.wantGrant = append(pre.wantGrant, k)
		return "", errUnprepared
	}
	return g, nil
}

// messageID returns the Message-ID of the new message a transaction makes
// for key (e.g. a rule's forward of a copy): the same in every run of the
// transaction, so that a grant signed for it between two runs fits.
func (pre *prepared) messageID(key string) string {
	id, ok := pre.ids[key]
	if !ok {
		id = placeholder.NewMessageID(pre.s.cfg.Domain)
		pre.ids[key] = id
	}
	return id
}

// expect notes what a transaction over doc, a message of author's, will
// need: the sizes of its resources and, when send is set and it names a
// recipient of another domain, the send grant of messageID. A doc that does
// not parse needs nothing: the transaction refuses it.
func (pre *prepared) expect(doc []byte, author, messageID string, send bool) {
	d, err := parseStored(doc)
	if err != nil {
		return
	}
	for _, l := range d.leaves() {
		if _, ok := pre.sizes[l.ContentID]; !ok {
			pre.wantSize = append(pre.wantSize, l.ContentID)
		}
	}
	if !send || pre.s.cfg.Outbound == nil {
		return
	}
	to, cc, bcc, err := d.recipients()
	if err != nil {
		return
	}
	for _, a := range append(append(append([]*mail.Address{}, to...), cc...), bcc...) {
		if _, dom, _ := strings.Cut(strings.ToLower(a.Address), "@"); dom != pre.s.cfg.Domain {
			pre.wantGrant = append(pre.wantGrant, grantFor{author, messageID})
			return
		}
	}
}

// fetch obtains what was asked for and is not held yet: the stats, then the
// grants. A stat's error is kept for the transaction to report; a grant's
// fails the operation.
func (pre *prepared) fetch(ctx context.Context) error {
	for _, id := range pre.wantSize {
		if _, ok := pre.sizes[id]; ok {
			continue
		}
		info, err := pre.s.cfg.Resources.Stat(ctx, id)
		pre.sizes[id] = sized{size: info.Size, err: err}
	}
	pre.wantSize = nil
	for _, k := range pre.wantGrant {
		if _, ok := pre.grants[k]; ok {
			continue
		}
		g, err := pre.s.cfg.Outbound.SendGrant(ctx, k.author, k.messageID)
		if err != nil {
			return fmt.Errorf("the send grant of %s: %w", k.messageID, err)
		}
		pre.grants[k] = g
	}
	pre.wantGrant = nil
	return nil
}

// update fetches what pre expects, then runs fn in one write transaction;
// when fn needs more than pre holds (errUnprepared) the transaction rolls
// back, the rest is fetched outside it, and fn runs again, at most
// maxPrepare times. fn must start from scratch on each run.
//
// A transaction that meets a resource condemned by garbage collection
// (meta.CondemnedError) waits for its release and runs again with the
// resource stat'ed anew, since the collector may have removed it.
func (s *Service) update(ctx context.Context, pre *prepared, fn func(tx meta.Tx) error) error {
	condemned := 0
	for run := 1; ; run++ {
		if err := pre.fetch(ctx); err != nil {
			return err
		}
		err := s.cfg.Meta.Update(ctx, fn)
		var ce *meta.CondemnedError
		if errors.As(err, &ce) && condemned < maxCondemned {
			condemned++
			run--
			if err := s.awaitRelease(ctx, ce.ID); err != nil {
				return err
			}
			delete(pre.sizes, ce.ID)
			pre.wantSize = append(pre.wantSize, ce.ID)
			continue
		}
		if !errors.Is(err, errUnprepared) {
			return err
		}
		if run == maxPrepare {
			return fmt.Errorf("the message kept changing while it was being sent (%d tries): %w", run, err)
		}
	}
}
