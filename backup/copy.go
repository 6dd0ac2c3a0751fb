package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
)

// Stores are one side of a copy.
type Stores struct {
	Meta      meta.Store
	Resources resource.Store
}

// Phase names what a copy is doing, for progress reports.
type Phase string

const (
	PhaseCheck     Phase = "check" // restore: the backup read whole before anything is written
	PhaseAccounts  Phase = "accounts"
	PhaseResources Phase = "resources"
	PhaseMessages  Phase = "messages"
	PhaseVerify    Phase = "verify"
)

// Options tune a copy.
type Options struct {
	// Progress, when set, is called as the copy goes: the phase, what is
	// done and the total (bytes for PhaseResources and PhaseVerify,
	// messages for PhaseMessages). It is called one call at a time, from the
	// copy's goroutines.
	Progress func(p Phase, done, total int64)
	// Batch is how many messages go in one target transaction (default
	// 200).
	Batch int
	// Workers is how many resources are copied (and verified) at once
	// (default 4): a remote store's round trips overlap.
	Workers int
	// Verify compares the target with the source snapshot after the
	// copy; VerifyBytes also reads every resource back from the target
	// and hashes it (otherwise its size is checked with Stat).
	Verify, VerifyBytes bool
}

// Summary says what a copy found and did. Its JSON is pullmail migrate's,
// backup's and restore's --json.
type Summary struct {
	Users        int `json:"users"`
	Settings     int `json:"settings"`
	UserSettings int `json:"user_settings"`
	Tokens       int `json:"tokens"`
	Clients      int `json:"clients"`
	Grants       int `json:"grants"`
	Messages     int `json:"messages"`
	// MessagesCopied is how many messages this run wrote (the rest were
	// in the target already: a resumed copy).
	MessagesCopied int `json:"messages_copied"`
	Uploads        int `json:"uploads"`
	Jobs           int `json:"jobs"`
	// Resources is how many distinct resources the snapshot references,
	// Bytes their size; ResourcesCopied and BytesCopied what this run
	// stored (the rest the target held already, with the same digest
	// and size).
	Resources       int   `json:"resources"`
	Bytes           int64 `json:"bytes"`
	ResourcesCopied int   `json:"resources_copied"`
	BytesCopied     int64 `json:"bytes_copied"`
	// SourceCursor is the source's change-feed cursor in the snapshot
	// copied, Cursor the target's after the copy (above it: every
	// client lists again).
	SourceCursor int64   `json:"source_cursor"`
	Cursor       int64   `json:"cursor"`
	Verified     bool    `json:"verified"`
	Seconds      float64 `json:"seconds"`
}

// ErrUnsupported is returned for a metadata store that cannot be copied
// from or into (it lacks meta.Exporter or meta.Loader).
var ErrUnsupported = errors.New("backup: the metadata store does not support copying")

// ErrVerify is in the chain of every difference Verify finds.
var ErrVerify = errors.New("backup: the copy differs from the source")

// ErrSourceChanged is in the chain of a copy that found a resource its
// snapshot references gone from the source's resource store: garbage
// collection removed it after a message naming it was deleted, since the
// snapshot. Nothing is wrong with either store; a copy from a newer
// snapshot (run it again) no longer needs it. Backup does so itself.
var ErrSourceChanged = errors.New("backup: the source changed under the copy")

// Copy copies everything of src into dst (see the package comment). It may
// be run again after an interruption or a failure and goes on where the
// last run got to.
func Copy(ctx context.Context, src, dst Stores, opt Options) (Summary, error) {
	sum, _, err := copyStores(ctx, src, dst, opt)
	return sum, err
}

// copyStores is Copy, also returning every resource the snapshot
// references, with its size (for a backup's manifest).
func copyStores(ctx context.Context, src, dst Stores, opt Options) (Summary, map[resource.ID]int64, error) {
	start := time.Now()
	if opt.Batch <= 0 {
		opt.Batch = 200
	}
	if opt.Workers <= 0 {
		opt.Workers = 4
	}
	if opt.Progress == nil {
		opt.Progress = func(Phase, int64, int64) {}
	}
	var sum Summary
	var refs map[resource.ID]int64
	err := src.Meta.View(ctx, func(r meta.Reader) error {
		ex, ok := r.(meta.Exporter)
		if !ok {
			return ErrUnsupported
		}
		sum = Summary{}
		c := &copier{src: src, dst: dst, r: r, ex: ex, opt: opt, sum: &sum}
		for _, step := range []func(context.Context) error{c.accounts, c.resources, c.messages, c.rest} {
			if err := step(ctx); err != nil {
				return err
			}
		}
		if opt.Verify {
			if err := c.verify(ctx); err != nil {
				return err
			}
			sum.Verified = true
		}
		refs = c.refs
		return nil
	})
	sum.Seconds = time.Since(start).Seconds()
	return sum, refs, err
}

type copier struct {
	src, dst Stores
	r        meta.Reader
	ex       meta.Exporter
	opt      Options
	sum      *Summary
	refs     map[resource.ID]int64 // every resource the snapshot references, with its size
}

// update runs fn in a target transaction that must implement meta.Loader.
func (c *copier) update(ctx context.Context, fn func(meta.Tx, meta.Loader) error) error {
	return c.dst.Meta.Update(ctx, func(tx meta.Tx) error {
		l, ok := tx.(meta.Loader)
		if !ok {
			return ErrUnsupported
		}
		return fn(tx, l)
	})
}

// accounts copies users, settings, tokens, clients, grants and revoked
// families: small, in one transaction.
func (c *copier) accounts(ctx context.Context) error {
	users, err := c.r.Users(ctx)
	if err != nil {
		return err
	}
	settings, err := c.ex.Settings(ctx)
	if err != nil {
		return err
	}
	userSettings := map[int64]map[string]string{}
	for _, u := range users {
		if userSettings[u.ID], err = c.ex.UserSettings(ctx, u.ID); err != nil {
			return err
		}
		c.sum.UserSettings += len(userSettings[u.ID])
	}
	tokens, err := c.ex.Tokens(ctx)
	if err != nil {
		return err
	}
	clients, err := c.r.Clients(ctx)
	if err != nil {
		return err
	}
	grants, err := c.ex.Grants(ctx)
	if err != nil {
		return err
	}
	families, err := c.ex.RevokedFamilies(ctx)
	if err != nil {
		return err
	}
	c.sum.Users, c.sum.Settings, c.sum.Tokens, c.sum.Clients, c.sum.Grants = len(users), len(settings), len(tokens), len(clients), len(grants)
	c.opt.Progress(PhaseAccounts, 0, int64(len(users)))
	err = c.update(ctx, func(tx meta.Tx, l meta.Loader) error {
		for _, u := range users {
			got, err := tx.UserByID(ctx, u.ID)
			switch {
			case err == nil && got.Address != u.Address:
				return fmt.Errorf("user %d is %s in the target, %s in the source: the target is another domain's", u.ID, got.Address, u.Address)
			case err == nil:
			case errors.Is(err, meta.ErrNotFound):
				if err := l.LoadUser(ctx, u); err != nil {
					return err
				}
			default:
				return err
			}
			for _, k := range slices.Sorted(maps.Keys(userSettings[u.ID])) {
				if err := tx.SetUserSetting(ctx, u.ID, k, userSettings[u.ID][k]); err != nil {
					return err
				}
			}
		}
		for _, k := range slices.Sorted(maps.Keys(settings)) {
			if err := tx.SetSetting(ctx, k, settings[k]); err != nil {
				return err
			}
		}
		for _, t := range tokens {
			if err := ifMissing(tx.TokenByHash(ctx, t.Hash))(func() error { return tx.AddToken(ctx, t) }); err != nil {
				return fmt.Errorf("token of user %d: %w", t.UserID, err)
			}
		}
		for _, cl := range clients {
			if err := ifMissing(tx.Client(ctx, cl.ID))(func() error { return tx.AddClient(ctx, cl) }); err != nil {
				return fmt.Errorf("client %q: %w", cl.ID, err)
			}
		}
		for _, g := range grants {
			if err := ifMissing(tx.GrantByHash(ctx, g.Hash))(func() error { return tx.AddGrant(ctx, g) }); err != nil {
				return fmt.Errorf("grant of client %q: %w", g.ClientID, err)
			}
		}
		for _, f := range slices.Sorted(maps.Keys(families)) {
			if err := tx.RevokeFamily(ctx, f, families[f]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copying accounts: %w", err)
	}
	c.opt.Progress(PhaseAccounts, int64(len(users)), int64(len(users)))
	return nil
}

// ifMissing runs add when the lookup found nothing, and nothing when it
// found the row.
func ifMissing[T any](_ T, err error) func(add func() error) error {
	return func(add func() error) error {
		if err == nil {
			return nil
		}
		if !errors.Is(err, meta.ErrNotFound) {
			return err
		}
		return add()
	}
}

// resources collects the references of every message and upload of the
// snapshot and copies each resource the target lacks.
func (c *copier) resources(ctx context.Context) error {
	var err error
	if c.refs, c.sum.Messages, err = references(ctx, c.ex, c.opt.Batch); err != nil {
		return err
	}
	ups, err := c.ex.Uploads(ctx)
	if err != nil {
		return err
	}
	c.sum.Uploads = len(ups)
	c.sum.Resources = len(c.refs)
	for _, size := range c.refs {
		c.sum.Bytes += size
	}
	var copied atomic.Int64
	var bytesCopied atomic.Int64
	err = c.parallel(ctx, PhaseResources, func(ctx context.Context, id resource.ID, size int64, moved func(int64)) error {
		ok, err := c.resource(ctx, id, size, moved)
		if err != nil {
			return fmt.Errorf("copying resource %s: %w", id, err)
		}
		if ok {
			copied.Add(1)
			bytesCopied.Add(size)
		}
		return nil
	})
	c.sum.ResourcesCopied, c.sum.BytesCopied = int(copied.Load()), bytesCopied.Load()
	return err
}

// parallel runs fn for every referenced resource, Options.Workers at a
// time, in ID order of starting, reporting the bytes done: fn reports what
// it moved as it goes (moved), the rest of each resource's size is counted
// when it returns. The first error stops the others.
func (c *copier) parallel(ctx context.Context, phase Phase, fn func(ctx context.Context, id resource.ID, size int64, moved func(int64)) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex // Progress runs under it, one call at a time
	var done int64
	add := func(n int64) {
		mu.Lock()
		done += n
		c.opt.Progress(phase, done, c.sum.Bytes)
		mu.Unlock()
	}
	add(0)
	ids := make(chan resource.ID)
	var wg sync.WaitGroup
	var first error
	var once sync.Once
	for range c.opt.Workers {
		wg.Go(func() {
			for id := range ids {
				size := c.refs[id]
				var counted int64
				err := fn(ctx, id, size, func(n int64) { counted += n; add(n) })
				if err != nil {
					once.Do(func() { first = err })
					cancel(err)
					continue
				}
				add(size - counted)
			}
		})
	}
feed:
	for _, id := range slices.Sorted(maps.Keys(c.refs)) {
		select {
		case ids <- id:
		case <-ctx.Done():
			break feed
		}
	}
	close(ids)
	wg.Wait()
	if first != nil {
		return first
	}
	return context.Cause(ctx)
}

// resource copies one resource unless the target has it with that size.
func (c *copier) resource(ctx context.Context, id resource.ID, size int64, moved func(int64)) (bool, error) {
	if in, err := c.dst.Resources.Stat(ctx, id); err == nil && in.Size == size {
		return false, nil
	} else if err != nil && !errors.Is(err, resource.ErrNotFound) {
		return false, err
	}
	obj, err := c.src.Resources.Open(ctx, id)
	if errors.Is(err, resource.ErrNotFound) {
		return false, fmt.Errorf("%w: the source store no longer holds it (collected since the snapshot: run again): %w", ErrSourceChanged, err)
	}
	if err != nil {
		return false, err
	}
	defer obj.Close()
	// The target checks digest and size as it writes, and commits
	// nothing that does not match.
	r := &counter{r: obj, report: moved}
	if _, err := c.dst.Resources.Put(ctx, r, resource.PutOptions{Want: id, Size: size}); err != nil {
		return false, err
	}
	return true, nil
}

// counter reports how much of a large resource has been read (the bytes
// since the last report, every MiB), so that a progress bar moves within
// it.
type counter struct {
	r      io.Reader
	n, at  int64
	report func(delta int64)
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n-c.at >= 1<<20 {
		c.report(c.n - c.at)
		c.at = c.n
	}
	return n, err
}

// messages copies the messages, a batch a transaction, with their
// envelopes.
func (c *copier) messages(ctx context.Context) error {
	after := ""
	var done int64
	total := int64(c.sum.Messages)
	c.opt.Progress(PhaseMessages, 0, total)
	for {
		ms, err := c.ex.AllMessages(ctx, after, c.opt.Batch)
		if err != nil {
			return err
		}
		if len(ms) == 0 {
			return nil
		}
		envs, err := c.envelopes(ctx, ms)
		if err != nil {
			return err
		}
		var copied int
		err = c.update(ctx, func(tx meta.Tx, l meta.Loader) error {
			copied = 0
			for _, m := range ms {
				_, err := tx.Message(ctx, m.UserID, m.ID)
				if err == nil {
					continue
				}
				if !errors.Is(err, meta.ErrNotFound) {
					return err
				}
				if err := l.LoadMessage(ctx, m); err != nil { // its UID and modseq kept
					return err
				}
				if e, ok := envs[m.ID]; ok {
					if err := tx.SetEnvelope(ctx, m.ID, e); err != nil {
						return err
					}
				}
				copied++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("copying messages after %q: %w", after, err)
		}
		c.sum.MessagesCopied += copied
		done += int64(len(ms))
		c.opt.Progress(PhaseMessages, done, total)
		after = ms[len(ms)-1].ID
	}
}

// envelopes reads the envelopes of the messages that have one.
func (c *copier) envelopes(ctx context.Context, ms []meta.Message) (map[string][]byte, error) {
	envs := map[string][]byte{}
	for _, m := range ms {
		e, err := c.r.Envelope(ctx, m.UserID, m.ID)
		if errors.Is(err, meta.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		envs[m.ID] = e
	}
	return envs, nil
}

// rest copies uploads and jobs and starts the target's change feed.
func (c *copier) rest(ctx context.Context) error {
	ups, err := c.ex.Uploads(ctx)
	if err != nil {
		return err
	}
	folders, err := c.ex.FolderStates(ctx)
	if err != nil {
		return err
	}
	jobs, err := c.r.Jobs(ctx, "", 0)
	if err != nil {
		return err
	}
	c.sum.Jobs = len(jobs)
	if c.sum.SourceCursor, err = c.r.Cursor(ctx); err != nil {
		return err
	}
	var cursor int64
	err = c.update(ctx, func(tx meta.Tx, l meta.Loader) error {
		for _, u := range ups {
			if err := l.LoadUpload(ctx, u); err != nil {
				return err
			}
		}
		for _, f := range folders {
			if err := l.LoadFolderState(ctx, f); err != nil {
				return fmt.Errorf("folder %q of user %d: %w", f.Folder, f.UserID, err)
			}
		}
		// Oldest first, so that the target's IDs keep the order.
		for _, j := range slices.Backward(jobs) {
			if _, err := tx.JobByKey(ctx, j.Key); err == nil {
				continue
			} else if !errors.Is(err, meta.ErrNotFound) {
				return err
			}
			j.ID = 0
			if j.State == meta.JobRunning {
				// Its holder is not running on the target's stores.
				j.State, j.Holder = meta.JobQueued, ""
			}
			if _, err := tx.AddJob(ctx, j); err != nil {
				return fmt.Errorf("job %q: %w", j.Key, err)
			}
		}
		var err error
		cursor, err = l.ResetFeed(ctx, c.sum.SourceCursor)
		return err
	})
	if err != nil {
		return fmt.Errorf("copying uploads and jobs: %w", err)
	}
	c.sum.Cursor = cursor
	return nil
}

// differ is a Verify failure.
func differ(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrVerify, fmt.Sprintf(format, args...))
}

// verify compares the target with the source snapshot.
func (c *copier) verify(ctx context.Context) error {
	return c.dst.Meta.View(ctx, func(d meta.Reader) error {
		dex, ok := d.(meta.Exporter)
		if !ok {
			return ErrUnsupported
		}
		if err := c.verifyAccounts(ctx, d, dex); err != nil {
			return err
		}
		if err := c.verifyMessages(ctx, d, dex); err != nil {
			return err
		}
		return c.verifyResources(ctx)
	})
}

func (c *copier) verifyAccounts(ctx context.Context, d meta.Reader, dex meta.Exporter) error {
	su, err := c.r.Users(ctx)
	if err != nil {
		return err
	}
	du, err := d.Users(ctx)
	if err != nil {
		return err
	}
	if len(su) != len(du) {
		return differ("%d users in the source, %d in the target", len(su), len(du))
	}
	for i := range su {
		a, b := su[i], du[i]
		if a.ID != b.ID || a.Address != b.Address || a.PasswordHash != b.PasswordHash || !a.Created.Equal(b.Created) {
			return differ("user %s", a.Address)
		}
		sa, err := c.ex.UserSettings(ctx, a.ID)
		if err != nil {
			return err
		}
		sb, err := dex.UserSettings(ctx, a.ID)
		if err != nil {
			return err
		}
		if !maps.Equal(sa, sb) {
			return differ("the settings of user %s", a.Address)
		}
	}
	for _, check := range []func(context.Context) error{
		same("the domain's settings", c.ex.Settings, dex.Settings, maps.Equal[map[string]string, map[string]string]),
		same("the tokens", c.ex.Tokens, dex.Tokens, equalSlices(sameToken)),
		same("the OAuth clients", c.r.Clients, d.Clients, equalSlices(sameClient)),
		same("the grants", c.ex.Grants, dex.Grants, equalSlices(sameGrant)),
		same("the revoked grant families", c.ex.RevokedFamilies, dex.RevokedFamilies, func(a, b map[string]time.Time) bool {
			return maps.EqualFunc(a, b, time.Time.Equal)
		}),
	} {
		if err := check(ctx); err != nil {
			return err
		}
	}
	sj, err := c.r.Jobs(ctx, "", 0)
	if err != nil {
		return err
	}
	for _, j := range sj {
		got, err := d.JobByKey(ctx, j.Key)
		if err != nil {
			return differ("job %q: %v", j.Key, err)
		}
		if !sameJob(j, got) {
			return differ("job %q", j.Key)
		}
	}
	return nil
}

// same returns a check that reads a listing from the source's snapshot and
// from the target and compares them.
func same[T any](what string, src, dst func(context.Context) (T, error), equal func(a, b T) bool) func(context.Context) error {
	return func(ctx context.Context) error {
		a, err := src(ctx)
		if err != nil {
			return err
		}
		b, err := dst(ctx)
		if err != nil {
			return err
		}
		if !equal(a, b) {
			return differ("%s", what)
		}
		return nil
	}
}

func equalSlices[T any](equal func(a, b T) bool) func(a, b []T) bool {
	return func(a, b []T) bool { return slices.EqualFunc(a, b, equal) }
}

// The comparisons of Verify: every field, times by instant (a store may
// give them back in another zone), nil and empty alike.

func sameToken(a, b meta.Token) bool {
	return bytes.Equal(a.Hash, b.Hash) && a.UserID == b.UserID && a.Label == b.Label &&
		a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires)
}

func sameClient(a, b meta.Client) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Public == b.Public && slices.Equal(a.RedirectURIs, b.RedirectURIs) &&
		bytes.Equal(a.JWKS, b.JWKS) && a.Created.Equal(b.Created)
}

func sameGrant(a, b meta.Grant) bool {
	return bytes.Equal(a.Hash, b.Hash) && a.Kind == b.Kind && a.Family == b.Family && a.ClientID == b.ClientID &&
		a.UserID == b.UserID && a.Scope == b.Scope && a.RedirectURI == b.RedirectURI && a.Challenge == b.Challenge &&
		a.JKT == b.JKT && a.UserCode == b.UserCode && a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires) &&
		a.Used == b.Used && a.Revoked == b.Revoked
}

// sameJob compares what a copy keeps of a job: all but its ID (the
// target's own) and, for a job running in the source, its state and
// holder (queued in the target).
func sameJob(a, b meta.Job) bool {
	if a.State == meta.JobRunning {
		a.State, a.Holder = meta.JobQueued, ""
	}
	return a.Kind == b.Kind && a.Key == b.Key && bytes.Equal(a.Payload, b.Payload) && a.State == b.State &&
		a.Attempts == b.Attempts && a.NextTry.Equal(b.NextTry) && a.LastError == b.LastError &&
		a.Created.Equal(b.Created) && a.Updated.Equal(b.Updated) && a.Expires.Equal(b.Expires) && a.Holder == b.Holder
}

func sameMessage(a, b meta.Message) bool {
	return a.ID == b.ID && a.UserID == b.UserID && a.Folder == b.Folder && a.MessageID == b.MessageID &&
		a.ThreadID == b.ThreadID && a.Status == b.Status && a.StatusReason == b.StatusReason && a.Seen == b.Seen &&
		a.From == b.From && a.Subject == b.Subject && a.Date.Equal(b.Date) && a.Created.Equal(b.Created) &&
		a.Updated.Equal(b.Updated) && bytes.Equal(a.Placeholder, b.Placeholder) && sameRefs(a.Refs, b.Refs) &&
		a.TrashedFrom == b.TrashedFrom && a.Trashed.Equal(b.Trashed) && slices.Equal(a.Keywords, b.Keywords) &&
		a.UID == b.UID && a.ModSeq == b.ModSeq
}

// sameRefs compares two sets of references (a store need not keep their
// order).
func sameRefs(a, b []meta.Ref) bool {
	by := func(x, y meta.Ref) int { return strings.Compare(string(x.ID), string(y.ID)) }
	return slices.Equal(slices.SortedFunc(slices.Values(a), by), slices.SortedFunc(slices.Values(b), by))
}

func (c *copier) verifyMessages(ctx context.Context, d meta.Reader, dex meta.Exporter) error {
	after := ""
	var n int64
	for {
		sm, err := c.ex.AllMessages(ctx, after, c.opt.Batch)
		if err != nil {
			return err
		}
		if len(sm) == 0 {
			break
		}
		dm, err := dex.AllMessages(ctx, after, len(sm))
		if err != nil {
			return err
		}
		if len(dm) != len(sm) {
			return differ("messages after %q: %d in the source, %d in the target", after, len(sm), len(dm))
		}
		for i := range sm {
			if !sameMessage(sm[i], dm[i]) {
				return differ("message %q", sm[i].ID)
			}
		}
		se, err := c.envelopes(ctx, sm)
		if err != nil {
			return err
		}
		de, err := (&copier{r: d}).envelopes(ctx, dm)
		if err != nil {
			return err
		}
		if !maps.EqualFunc(se, de, bytes.Equal) {
			return differ("the envelopes of the messages after %q", after)
		}
		n += int64(len(sm))
		after = sm[len(sm)-1].ID
	}
	if more, err := dex.AllMessages(ctx, after, 1); err != nil {
		return err
	} else if len(more) > 0 {
		return differ("message %q is in the target only", more[0].ID)
	}
	if err := same("the folders' UIDs", c.ex.FolderStates, dex.FolderStates, equalSlices(func(a, b meta.UserFolder) bool {
		return a == b
	}))(ctx); err != nil {
		return err
	}
	return same("the uploads", c.ex.Uploads, dex.Uploads, equalSlices(func(a, b meta.Upload) bool {
		return a.UserID == b.UserID && a.Ref == b.Ref && a.Created.Equal(b.Created)
	}))(ctx)
}

// verifyResources checks that the target holds every referenced resource:
// read whole and hashed with VerifyBytes, by Stat otherwise.
func (c *copier) verifyResources(ctx context.Context) error {
	return c.parallel(ctx, PhaseVerify, func(ctx context.Context, id resource.ID, size int64, _ func(int64)) error {
		return c.verifyResource(ctx, id, size)
	})
}

func (c *copier) verifyResource(ctx context.Context, id resource.ID, size int64) error {
	if !c.opt.VerifyBytes {
		in, err := c.dst.Resources.Stat(ctx, id)
		if err != nil || in.Size != size {
			return differ("resource %s: %v (size %d, want %d)", id, err, in.Size, size)
		}
		return nil
	}
	obj, err := c.dst.Resources.Open(ctx, id)
	if err != nil {
		return differ("resource %s: %v", id, err)
	}
	defer obj.Close()
	h := sha256.New()
	n, err := io.Copy(h, obj)
	if err != nil {
		return differ("resource %s: %v", id, err)
	}
	if n != size || resource.IDFromSum(h.Sum(nil)) != id {
		return differ("resource %s: %d bytes whose digest is %s", id, n, resource.IDFromSum(h.Sum(nil)))
	}
	return nil
}
