package mta

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/upload"
)

func (m *MTA) runPull(ctx context.Context, j meta.Job) error {
	var p federation.PullPayload
	attempt := json.Unmarshal(j.Payload, &p)
	if attempt != nil {
		attempt = final(fmt.Errorf("pull payload: %w", attempt))
	} else {
		attempt = m.pull(ctx, p, j.Expires)
	}
	if ctx.Err() != nil {
		return attempt
	}
	o := m.outcome(j, attempt, p.Origin)
	state, err := m.finish(ctx, j, o,
		func(tx meta.Tx) error { return m.setStatus(ctx, tx, p.Messages, meta.StatusComplete, "") },
		func(tx meta.Tx) error {
			return m.setStatus(ctx, tx, p.Messages, meta.StatusFailed, pullReason(p, j, o))
		})
	if err != nil {
		return fmt.Errorf("finishing pull %s: %w", j.Key, err)
	}
	if state == meta.JobFailed {
		m.unstage(ctx, p.Resources)
	}
	return attempt
}

// pullReason is a failed pull's status_reason: its stable code (Reason*),
// a colon, and what happened in words for the recipient
// (docs/PROTOCOL.md §11.4).
func pullReason(p federation.PullPayload, j meta.Job, o outcome) string {
	origin := p.Origin
	if origin == "" {
		origin = "the sender's domain"
	}
	var why string
	switch o.reason {
	case ReasonRefused:
		why = fmt.Sprintf("%s refused to serve this message's content (%v)", origin, o.err)
	case ReasonHorizon:
		why = fmt.Sprintf("this message's content could not be fetched from %s for %s, the retry horizon; the last error: %v",
			origin, span(j.Expires.Sub(j.Created)), o.err)
	case ReasonNoDomain:
		why = fmt.Sprintf("%s does not take part in Pullmail delivery (%v)", origin, o.err)
	default:
		why = fmt.Sprintf("this server could not fetch the message's content (%v)", o.err)
	}
	return o.reason + ": " + why
}

// span writes a horizon for people: whole days as days.
func span(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d > day && d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	}
	return d.Round(time.Second).String()
}

// setStatus moves the local copies still fetching to status, through the
// mailbox. A copy gone (deleted by its owner) is skipped.
func (m *MTA) setStatus(ctx context.Context, tx meta.Tx, refs []federation.MessageRef, status meta.Status, reason string) error {
	for _, r := range refs {
		if err := m.cfg.Mailbox.SetPullOutcome(ctx, tx, r.UserID, r.ID, status, reason); err != nil {
			return err
		}
	}
	return nil
}

// pull makes one attempt at holding every resource of p; expires is the
// job's horizon (how long staged bytes are worth keeping).
func (m *MTA) pull(ctx context.Context, p federation.PullPayload, expires time.Time) error {
	var missing []meta.Ref
	for _, r := range p.Resources {
		_, err := m.cfg.Resources.Stat(ctx, r.ID)
		if errors.Is(err, resource.ErrNotFound) {
			missing = append(missing, r)
			continue
		}
		if err != nil {
			return storageError(fmt.Errorf("stat %s: %w", r.ID, err))
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
	// The origin's AS verifies the chain, from its own assertion to us,
	// once for the whole pull, and signs its verdict into the fetch token
	// (docs/PROTOCOL.md §10.6, §12.4): the fetches carry nothing else.
	cb, err := json.Marshal(p.Chain)
	if err != nil {
		return final(fmt.Errorf("encoding the chain: %w", err))
	}
	form := url.Values{
		"subject_token": {p.Chain[len(p.Chain)-1].Assertion}, "subject_token_type": {federation.TokenTypeJWT},
		"requested_token_type": {federation.TokenTypeAccess}, "resource": {auth.Issuer}, "chain": {string(cb)}}
	tok, err := m.exchange(ctx, auth.TokenEndpoint, form)
	if err != nil {
		return fmt.Errorf("obtaining the fetch token from %s: %w", p.Origin, err)
	}
	for _, r := range missing {
		f := fetch{target: mb.FetchEndpoint + "/" + string(r.ID), tok: tok, ref: r, expires: expires}
		if err := m.fetchOnce(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// fetchOnce fetches f.ref unless the domain holds it by now. Pulls of the
// same resource (two Bcc copies to this domain, two messages with one
// attachment) wait for each other here, so the domain pulls each digest
// once whatever the number of jobs, and of nodes, that want it: within this
// process they queue for lockDigest, across the nodes sharing the stores
// for the database's lock on the digest (holdPull).
func (m *MTA) fetchOnce(ctx context.Context, f fetch) error {
	unlock := m.lockDigest(f.ref.ID)
	defer unlock()
	if _, err := m.cfg.Resources.Stat(ctx, f.ref.ID); err == nil {
		return nil
	}
	ctx, release, stored, err := m.holdPull(ctx, f.ref.ID)
	if err != nil || stored {
		return err
	}
	defer release()
	if m.cfg.Staging != nil && f.ref.Size >= m.cfg.StageAbove {
		return m.fetchStaged(ctx, f)
	}
	return m.fetchDirect(ctx, f)
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

// pullLock is the name of the database lock (meta.Locks) on the pull of a
// resource.
func pullLock(id resource.ID) string { return "pull:" + string(id) }

// holdPull takes the database's lock on the pull of id for this node
// (Config.Node), so that no two nodes of the domain fetch the same digest
// at once. While another node holds it, it waits, looking every Poll for
// the resource in the store: stored is true, with no lock taken, when the
// other node stored it meanwhile. Otherwise the lock is this node's until
// release, renewed every third of Config.Lease meanwhile (a node that dies
// mid-pull frees it when the lease ends); the context returned ends when
// the lock turns out lost, so that the fetch stops. The caller holds
// lockDigest: the node's own pulls of id do not share the lock.
func (m *MTA) holdPull(ctx context.Context, id resource.ID) (_ context.Context, release func(), stored bool, err error) {
	name, waited := pullLock(id), false
	for {
		ok, err := m.cfg.Meta.Lock(ctx, name, m.cfg.Node, m.cfg.Clock(), m.cfg.Lease)
		if err != nil {
			return ctx, nil, false, storageError(fmt.Errorf("locking the pull of %s: %w", id, err))
		}
		if ok {
			break
		}
		if !waited {
			m.cfg.Log.Info("mta: another node is pulling the resource, waiting", "resource", id, "node", m.cfg.Node)
			waited = true
		}
		select {
		case <-ctx.Done():
			return ctx, nil, false, ctx.Err()
		case <-time.After(m.cfg.Poll):
		}
		if _, err := m.cfg.Resources.Stat(ctx, id); err == nil {
			return ctx, nil, true, nil
		}
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(m.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
			ok, err := m.cfg.Meta.Lock(lctx, name, m.cfg.Node, m.cfg.Clock(), m.cfg.Lease)
			switch {
			case err != nil && lctx.Err() == nil:
				m.cfg.Log.Warn("mta: renewing a pull lock", "resource", id, "err", err)
			case err == nil && !ok:
				m.cfg.Log.Warn("mta: pull lock lost to another node, stopping the fetch", "resource", id, "node", m.cfg.Node)
				cancel()
				return
			}
		}
	}()
	return lctx, func() {
		cancel()
		<-done
		// Not lctx, ended by now: the lock must go even when the attempt
		// was stopped.
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer ucancel()
		if err := m.cfg.Meta.Unlock(uctx, name, m.cfg.Node); err != nil {
			m.cfg.Log.Warn("mta: releasing a pull lock (it ends with its lease)", "resource", id, "err", err)
		}
	}, false, nil
}

// MaxResumes is how many times one fetch resumes with Range after a cut
// before the attempt fails (and the job retries, from the bytes staged if
// any, otherwise from the start).
const MaxResumes = 3

// fetch is one resource to fetch from its origin.
type fetch struct {
	target, tok string
	ref         meta.Ref
	expires     time.Time // the job's horizon
}

// fetchDirect streams one resource from the origin into the store, which
// checks its size and digest. A transfer cut midway resumes with Range where
// it stopped, into the same Put; a stop of the attempt loses the bytes.
func (m *MTA) fetchDirect(ctx context.Context, f fetch) error {
	rd := &resumer{m: m, ctx: ctx, f: f}
	if err := rd.open(); err != nil {
		return err
	}
	defer rd.close()
	return m.store(ctx, rd, f.ref)
}

// store puts a fetched resource into the resource store.
func (m *MTA) store(ctx context.Context, r io.Reader, ref meta.Ref) error {
	_, err := m.cfg.Resources.Put(ctx, r, resource.PutOptions{Want: ref.ID, Size: ref.Size})
	var f *failure
	switch {
	case err == nil:
		return nil
	case errors.As(err, &f):
		return err
	case errors.Is(err, resource.ErrMismatch):
		return temporary(fmt.Errorf("fetching %s: the bytes served are not the resource: %w", ref.ID, err))
	}
	return storageError(fmt.Errorf("storing %s: %w", ref.ID, err))
}

// stageID is the staging session of the pull of a resource: one per
// digest, whatever the jobs that want it, and never a user's upload ID
// (those are random, these are not; UserID 0 is nobody's).
func stageID(id resource.ID) string {
	sum := sha256.Sum256([]byte("pullmail pull staging\x00" + string(id)))
	return "u" + strings.ToLower(base32.StdEncoding.EncodeToString(sum[:15]))
}

// fetchStaged fetches a large resource through the staging: the bytes are
// appended there as they arrive (and counted durably: a clean stop keeps
// every byte received, a crash the last checkpoint), so that a later
// attempt, in this process or the next, asks only for the rest with
// "Range: bytes=N-" (and If-Range: the resource's ETag). An origin that
// answers 200 to that, or 416, is served from the start again. The whole
// digest is checked by the staging as the bytes go in, and again by the
// resource store when they are committed there.
func (m *MTA) fetchStaged(ctx context.Context, f fetch) error {
	st, sid := m.cfg.Staging, stageID(f.ref.ID)
	sess, err := m.stage(ctx, sid, f, false)
	if err != nil {
		return err
	}
	if !sess.Full() {
		rd := &resumer{m: m, ctx: ctx, f: f, n: sess.Offset, fresh: true}
		if err := rd.open(); err != nil {
			return err
		}
		defer rd.close()
		if rd.n != sess.Offset { // the origin starts over
			m.cfg.Log.Info("mta: the origin did not resume, fetching again", "resource", f.ref.ID, "staged", sess.Offset)
			if sess, err = m.stage(ctx, sid, f, true); err != nil {
				return err
			}
		}
		if sess.Offset > 0 {
			m.cfg.Log.Info("mta: resuming a staged pull", "resource", f.ref.ID, "at", sess.Offset, "size", f.ref.Size)
		}
		sess, err = st.Append(ctx, sid, sess.Offset, rd)
		var ff *failure
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err() // what arrived is staged for the next attempt
		case errors.As(err, &ff):
			return err
		case errors.Is(err, upload.ErrPastSize):
			m.unstageOne(ctx, sid)
			return temporary(fmt.Errorf("fetching %s: the origin sent more than its %d bytes", f.ref.ID, f.ref.Size))
		default:
			return storageError(fmt.Errorf("staging %s: %w", f.ref.ID, err))
		}
		if !sess.Full() {
			return temporary(fmt.Errorf("fetching %s: the origin sent %d of %d bytes", f.ref.ID, sess.Offset, f.ref.Size))
		}
	}
	if sess.Digest != f.ref.ID {
		m.unstageOne(ctx, sid)
		return temporary(fmt.Errorf("fetching %s: the bytes served hash to %s: %w", f.ref.ID, sess.Digest, resource.ErrMismatch))
	}
	rc, err := st.Open(ctx, sid)
	if err != nil {
		return storageError(fmt.Errorf("reading the staged %s: %w", f.ref.ID, err))
	}
	err = m.store(ctx, rc, f.ref)
	rc.Close()
	if err != nil {
		if errors.Is(err, resource.ErrMismatch) {
			m.unstageOne(ctx, sid) // the staged copy is damaged: fetch again
		}
		return err
	}
	m.unstageOne(ctx, sid)
	return nil
}

// stage returns the staging session of f, creating it when there is none,
// or when it is not f's (another size: a different claim about the same
// digest) or anew is set.
func (m *MTA) stage(ctx context.Context, sid string, f fetch, anew bool) (upload.Session, error) {
	st := m.cfg.Staging
	sess, err := st.Get(ctx, sid)
	switch {
	case err == nil && !anew && sess.Size == f.ref.Size && sess.Want == f.ref.ID && sess.ContentID == "":
		return sess, nil
	case err == nil:
		if err := st.Delete(ctx, sid); err != nil {
			return sess, storageError(fmt.Errorf("dropping the staged %s: %w", f.ref.ID, err))
		}
	case !errors.Is(err, upload.ErrNotFound):
		return sess, storageError(fmt.Errorf("reading the staged %s: %w", f.ref.ID, err))
	}
	now := m.cfg.Clock()
	expires := f.expires
	if expires.Before(now.Add(time.Hour)) {
		expires = now.Add(time.Hour) // the last attempts of a job, or no horizon
	}
	sess = upload.Session{ID: sid, Size: f.ref.Size, Want: f.ref.ID, Created: now, Expires: expires}
	if err := st.Create(ctx, sess); err != nil {
		return sess, storageError(fmt.Errorf("staging %s: %w", f.ref.ID, err))
	}
	return sess, nil
}

// unstage drops the staged bytes of a pull that gave up.
func (m *MTA) unstage(ctx context.Context, refs []meta.Ref) {
	if m.cfg.Staging == nil {
		return
	}
	for _, r := range refs {
		unlock := m.lockDigest(r.ID)
		m.unstageOne(ctx, stageID(r.ID))
		unlock()
	}
}

func (m *MTA) unstageOne(ctx context.Context, sid string) {
	if err := m.cfg.Staging.Delete(ctx, sid); err != nil {
		m.cfg.Log.Warn("mta: dropping staged pull bytes", "session", sid, "err", err)
	}
}

// resumer reads a resource from the origin, from byte n on, reopening it
// with "Range: bytes=N-" when the connection breaks after N bytes.
type resumer struct {
	m   *MTA
	ctx context.Context
	f   fetch
	cur io.ReadCloser
	n   int64 // bytes read so far (with those staged before)
	// fresh lets the first open start over from byte 0 when the origin
	// will not resume (200 or 416 to the Range): staged bytes can be
	// dropped, those already in a Put cannot.
	fresh   bool
	resumes int
}

func (rd *resumer) close() {
	if rd.cur != nil {
		rd.cur.Close()
		rd.cur = nil
	}
}

// open asks for the bytes from rd.n on.
func (rd *resumer) open() error {
	fresh := rd.fresh
	rd.fresh = false
	// If-Range: the origin's ETag is the quoted Content-ID
	// (docs/PROTOCOL.md §11.3); should the bytes under it differ, it sends
	// them whole.
	from, target := rd.n, rd.f.target
	resp, data, err := rd.m.request(rd.ctx, http.MethodGet, target, rd.f.tok, func(proof string) (*federation.Answer, error) {
		return rd.m.tr.Fetch(rd.ctx, federation.FetchRequest{Endpoint: target, Token: rd.f.tok, DPoP: proof,
			From: from, IfRange: `"` + string(rd.f.ref.ID) + `"`})
	})
	if err != nil {
		return err
	}
	switch {
	case rd.n > 0 && fresh && resp.Status == http.StatusOK:
		rd.n = 0 // the whole resource: the caller starts over
	case rd.n > 0 && fresh && resp.Status == http.StatusRequestedRangeNotSatisfiable:
		rd.n = 0 // the staged bytes run past what the origin holds
		return rd.open()
	case rd.n > 0 && resp.Status == http.StatusPartialContent:
		if !strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", rd.n)) {
			resp.Body.Close()
			return temporary(fmt.Errorf("fetching %s: resumed at %q, not at byte %d", rd.f.ref.ID, resp.Header.Get("Content-Range"), rd.n))
		}
	case rd.n == 0 && resp.Status == http.StatusOK:
	default:
		if data == nil {
			resp.Body.Close()
		}
		return fetchError(rd.f.ref.ID, resp.Status, data)
	}
	rd.cur = resp.Body
	return nil
}

// fetchError classifies an origin's answer to a fetch: a 4xx but 401, 408
// and 429 is its word that the resource is not to be had (not found, gone,
// refused): permanent. 401 is retried (the next attempt gets a new fetch
// token), as are 5xx and anything else.
func fetchError(id resource.ID, status int, data []byte) error {
	err := answerError("fetching "+string(id), status, data)
	if status >= 400 && status < 500 && !retryable(status) && status != http.StatusUnauthorized {
		return refused(err)
	}
	return temporary(err)
}

func (rd *resumer) Read(p []byte) (int, error) {
	for {
		n, err := rd.cur.Read(p)
		rd.n += int64(n)
		if err == nil || err == io.EOF || rd.ctx.Err() != nil || rd.resumes >= MaxResumes || rd.n >= rd.f.ref.Size {
			return n, err
		}
		rd.m.cfg.Log.Info("mta: transfer cut, resuming", "resource", rd.f.ref.ID, "at", rd.n, "err", err)
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
