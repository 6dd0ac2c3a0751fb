package mta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/inbound"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
)

func (m *MTA) runPull(ctx context.Context, j meta.Job) error {
	var p inbound.PullPayload
	attempt := json.Unmarshal(j.Payload, &p)
	if attempt != nil {
		attempt = final(fmt.Errorf("pull payload: %w", attempt))
	} else {
		attempt = m.pull(ctx, p)
	}
	if ctx.Err() != nil {
		return attempt
	}
	setStatus := func(status meta.Status) func(tx meta.Tx, reason string) error {
		return func(tx meta.Tx, reason string) error { return m.setStatus(ctx, tx, p.Messages, status, reason) }
	}
	err := m.finish(ctx, j, attempt, m.nextTry(j), setStatus(meta.StatusComplete), setStatus(meta.StatusFailed))
	if err != nil {
		return fmt.Errorf("finishing pull %s: %w", j.Key, err)
	}
	return attempt
}

// setStatus moves the local copies still fetching to status. A copy gone
// (deleted by its owner) is skipped.
func (m *MTA) setStatus(ctx context.Context, tx meta.Tx, refs []inbound.MessageRef, status meta.Status, reason string) error {
	now := m.cfg.Clock()
	for _, r := range refs {
		msg, err := tx.Message(ctx, r.UserID, r.ID)
		if errors.Is(err, meta.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading copy %s: %w", r.ID, err)
		}
		if msg.Status != meta.StatusFetching {
			continue
		}
		msg.Status, msg.StatusReason, msg.Updated = status, reason, now
		if err := tx.UpdateMessage(ctx, msg); err != nil {
			return fmt.Errorf("updating copy %s: %w", r.ID, err)
		}
	}
	return nil
}

// pull makes one attempt at holding every resource of p.
func (m *MTA) pull(ctx context.Context, p inbound.PullPayload) error {
	var missing []meta.Ref
	for _, r := range p.Resources {
		_, err := m.cfg.Resources.Stat(ctx, r.ID)
		if errors.Is(err, resource.ErrNotFound) {
			missing = append(missing, r)
			continue
		}
		if err != nil {
			return temporary(fmt.Errorf("stat %s: %w", r.ID, err))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if len(p.Chain) == 0 {
		return final(errors.New("the pull has no chain"))
	}
	auth, err := m.cfg.Discovery.Authority(ctx, p.Origin)
	if err != nil {
		return discoveryError(p.Origin, err)
	}
	mb, err := m.cfg.Discovery.Mailbox(ctx, p.Origin)
	if err != nil {
		return discoveryError(p.Origin, err)
	}
	form := url.Values{
		"subject_token": {p.Chain[len(p.Chain)-1].Assertion}, "subject_token_type": {authz.TokenTypeJWT},
		"requested_token_type": {authz.TokenTypeAccess}, "resource": {auth.Issuer}}
	if len(p.Chain) > 1 {
		// A forwarded message: the origin's AS checks the chain from its
		// own assertion to us (docs/PROTOCOL.md §12.4).
		cb, err := json.Marshal(p.Chain)
		if err != nil {
			return final(fmt.Errorf("encoding the chain: %w", err))
		}
		form.Set("chain", string(cb))
	}
	tok, err := m.exchange(ctx, auth.TokenEndpoint, form)
	if err != nil {
		return fmt.Errorf("obtaining the fetch token from %s: %w", p.Origin, err)
	}
	body, err := envelope(inbound.Envelope{Placeholder: p.Placeholder, Chain: p.Chain})
	if err != nil {
		return final(fmt.Errorf("encoding the fetch: %w", err))
	}
	for _, r := range missing {
		if err := m.fetchOnce(ctx, mb.FetchEndpoint+"/"+string(r.ID), tok, body, r); err != nil {
			return err
		}
	}
	return nil
}

// fetchOnce fetches r unless the domain holds it by now. Pulls of the same
// resource (two Bcc copies to this domain, two messages with one
// attachment) wait for each other here, so the domain pulls each digest
// once whatever the number of jobs that want it.
func (m *MTA) fetchOnce(ctx context.Context, target, tok string, body []byte, r meta.Ref) error {
	unlock := m.lockDigest(r.ID)
	defer unlock()
	if _, err := m.cfg.Resources.Stat(ctx, r.ID); err == nil {
		return nil
	}
	return m.fetch(ctx, target, tok, body, r)
}

// lockDigest serialises the pulls of one resource within this process.
func (m *MTA) lockDigest(id resource.ID) (unlock func()) {
	m.mu.Lock()
	l, ok := m.pulling[id]
	if !ok {
		l = &digestLock{}
		m.pulling[id] = l
	}
	l.users++
	m.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		m.mu.Lock()
		if l.users--; l.users == 0 {
			delete(m.pulling, id)
		}
		m.mu.Unlock()
	}
}

type digestLock struct {
	sync.Mutex
	users int // holders and waiters; guarded by MTA.mu
}

// MaxResumes is how many times one fetch resumes with Range after a cut
// before the attempt fails (and the job retries from the start).
const MaxResumes = 3

// fetch streams one resource from the origin into the store, which checks
// its size and digest. A transfer cut midway resumes with Range where it
// stopped, into the same Put.
func (m *MTA) fetch(ctx context.Context, target, tok string, body []byte, r meta.Ref) error {
	rd := &resumer{m: m, ctx: ctx, target: target, tok: tok, body: body, ref: r}
	if err := rd.open(); err != nil {
		return err
	}
	defer rd.close()
	if _, err := m.cfg.Resources.Put(ctx, rd, resource.PutOptions{Want: r.ID, Size: r.Size}); err != nil {
		var f *failure
		if errors.As(err, &f) {
			return err
		}
		return temporary(fmt.Errorf("storing %s: %w", r.ID, err))
	}
	return nil
}

// resumer reads a resource from the origin, reopening it with
// "Range: bytes=N-" when the connection breaks after N bytes.
type resumer struct {
	m           *MTA
	ctx         context.Context
	target, tok string
	body        []byte
	ref         meta.Ref
	cur         io.ReadCloser
	n           int64 // bytes read so far
	resumes     int
}

func (rd *resumer) close() {
	if rd.cur != nil {
		rd.cur.Close()
		rd.cur = nil
	}
}

// open asks for the bytes from rd.n on.
func (rd *resumer) open() error {
	var hdr http.Header
	if rd.n > 0 {
		hdr = http.Header{"Range": {fmt.Sprintf("bytes=%d-", rd.n)}}
	}
	resp, data, err := rd.m.post(rd.ctx, rd.target, rd.tok, "application/json", func() io.Reader { return bytes.NewReader(rd.body) }, hdr)
	if err != nil {
		return err
	}
	want := http.StatusOK
	if rd.n > 0 {
		want = http.StatusPartialContent
	}
	if resp.StatusCode != want {
		if data == nil {
			resp.Body.Close()
		}
		err := answerError("fetching "+string(rd.ref.ID), resp.StatusCode, data)
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && !retryable(resp.StatusCode) && resp.StatusCode != http.StatusUnauthorized {
			return final(err)
		}
		return temporary(err)
	}
	if rd.n > 0 && !strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", rd.n)) {
		resp.Body.Close()
		return temporary(fmt.Errorf("fetching %s: resumed at %q, not at byte %d", rd.ref.ID, resp.Header.Get("Content-Range"), rd.n))
	}
	rd.cur = resp.Body
	return nil
}

func (rd *resumer) Read(p []byte) (int, error) {
	for {
		n, err := rd.cur.Read(p)
		rd.n += int64(n)
		if err == nil || err == io.EOF || rd.ctx.Err() != nil || rd.resumes >= MaxResumes || rd.n >= rd.ref.Size {
			return n, err
		}
		rd.m.cfg.Log.Info("mta: transfer cut, resuming", "resource", rd.ref.ID, "at", rd.n, "err", err)
		rd.resumes++
		rd.close()
		if oerr := rd.open(); oerr != nil {
			return n, oerr
		}
		if n > 0 {
			return n, nil
		}
	}
}
