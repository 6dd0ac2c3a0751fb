// Package memstore is a meta.Store in memory, for fast unit tests of the
// packages above the store: it passes meta/metatest like the database
// stores, and keeps nothing when it is closed.
//
// The committed state is an immutable value behind an atomic pointer: View
// and the Store's reads take the current one, so a snapshot costs nothing
// and never sees a later commit. Update runs one at a time (a mutex), on a
// copy of the state whose maps are copied on their first write; the commit
// stores the copy, a failed or panicking function drops it. That is
// serializable, and fn runs once. Not for production: every write copies
// each map it touches, which is O(size of the map).
package memstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/internal/rows"
	"github.com/pullmail/pullmail/resource"
)

// Store is a meta.Store in memory. It is safe for concurrent use; the zero
// value is not usable: New.
type Store struct {
	reader              // reads the committed state
	mu       sync.Mutex // held by Update, ClaimJobs and the Prune methods
	cur      atomic.Pointer[state]
	onceMu   sync.Mutex
	once     map[string]time.Time
	locksMu  sync.Mutex
	locks    map[string]lock // meta.Locks, apart from the transactions
	onCommit atomic.Pointer[func(users []int64)]
	closed   atomic.Bool
}

var (
	_ meta.Store    = (*Store)(nil)
	_ meta.Notifier = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	s := &Store{once: map[string]time.Time{}, locks: map[string]lock{}}
	s.cur.Store(&state{})
	s.reader = reader{load: s.cur.Load}
	return s
}

var errClosed = errors.New("meta/memstore: store is closed")

// Close makes later writes fail.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

type (
	folderKey struct {
		user   int64
		folder meta.Folder
	}
	uploadKey struct {
		user   int64
		digest resource.ID
	}
	upload struct {
		size    int64
		created time.Time
	}
	userKey struct {
		user int64
		name string
	}
	change struct {
		meta.Change
		at time.Time
	}
	userRow struct {
		meta.User
		floor int64 // the highest pruned change seq
	}
)

// state is the store's content. A committed state is never changed; a
// transaction changes its own copy, copying each map before its first
// write (own).
type state struct {
	settings     map[string]string
	users        map[int64]userRow
	nextUser     int64
	tokens       map[string]meta.Token // by string(hash)
	userSettings map[userKey]string
	uploads      map[uploadKey]upload
	messages     map[string]meta.Message
	envelopes    map[string][]byte
	index        map[string]indexDoc // by message ID: the search index
	folders      map[folderKey]meta.FolderState
	changes      []change // by Seq
	seq          int64    // the highest Seq given
	clients      map[string]meta.Client
	grants       map[string]meta.Grant // by string(hash)
	families     map[string]time.Time  // revoked, until
	jobs         map[int64]meta.Job
	nextJob      int64
	idempotency  map[userKey]meta.Idempotency // name: the key
	condemned    map[resource.ID]time.Time    // garbage collection's (meta.CollectorWriter)
	epoch        int64                        // meta.CollectorReader.CollectorEpoch
}

// own returns m, copied unless this transaction copied it already.
func own[K comparable, V any](owned map[any]bool, m *map[K]V) map[K]V {
	if !owned[m] {
		*m = maps.Clone(*m)
		if *m == nil {
			*m = map[K]V{}
		}
		owned[m] = true
	}
	return *m
}

// reader implements meta.Reader on a state.
type reader struct {
	load func() *state
}

func (r reader) st() *state { return r.load() }

func notFound(what string) error { return fmt.Errorf("meta/memstore: %s: %w", what, meta.ErrNotFound) }
func exists(what string) error   { return fmt.Errorf("meta/memstore: %s: %w", what, meta.ErrExists) }

func (r reader) Setting(_ context.Context, key string) (string, error) {
	v, ok := r.st().settings[key]
	if !ok {
		return "", notFound("setting " + key)
	}
	return v, nil
}

func (r reader) UserSetting(_ context.Context, userID int64, name string) (string, error) {
	v, ok := r.st().userSettings[userKey{userID, name}]
	if !ok {
		return "", notFound(fmt.Sprintf("setting %q of user %d", name, userID))
	}
	return v, nil
}

func (r reader) UserByAddress(_ context.Context, address string) (meta.User, error) {
	for _, u := range r.st().users {
		if u.Address == address {
			return u.User, nil
		}
	}
	return meta.User{}, notFound("user " + address)
}

func (r reader) UserByID(_ context.Context, id int64) (meta.User, error) {
	u, ok := r.st().users[id]
	if !ok {
		return meta.User{}, notFound(fmt.Sprint("user ", id))
	}
	return u.User, nil
}

func (r reader) Users(context.Context) ([]meta.User, error) {
	var us []meta.User
	for _, u := range r.st().users {
		us = append(us, u.User)
	}
	slices.SortFunc(us, func(a, b meta.User) int { return strings.Compare(a.Address, b.Address) })
	return us, nil
}

func (r reader) TokenByHash(_ context.Context, hash []byte) (meta.Token, error) {
	t, ok := r.st().tokens[string(hash)]
	if !ok {
		return meta.Token{}, notFound("token")
	}
	t.Hash = bytes.Clone(t.Hash)
	return t, nil
}

// cloneMessage copies the slices of m, so that neither the caller nor the
// store sees the other's later changes.
func cloneMessage(m meta.Message) meta.Message {
	m.Placeholder = bytes.Clone(m.Placeholder)
	m.Refs = slices.Clone(m.Refs)
	m.Keywords = slices.Clone(m.Keywords)
	return m
}

// folderState is the folder's state; one never used starts at now.
func (st *state) folderState(userID int64, f meta.Folder) meta.FolderState {
	if fs, ok := st.folders[folderKey{userID, f}]; ok {
		return fs
	}
	return meta.FolderState{UIDValidity: meta.UIDValidityOf(st.users[userID].Created), UIDNext: 1}
}

func (r reader) FolderState(_ context.Context, userID int64, f meta.Folder) (meta.FolderState, error) {
	return r.st().folderState(userID, f), nil
}

func (r reader) FolderIndex(_ context.Context, userID int64, f meta.Folder, changedSince int64) ([]meta.IndexEntry, error) {
	var out []meta.IndexEntry
	for _, m := range r.st().messages {
		if m.UserID == userID && m.Folder == f && m.ModSeq > changedSince {
			out = append(out, meta.IndexEntry{UID: m.UID, ID: m.ID, ModSeq: m.ModSeq, Seen: m.Seen,
				Keywords: slices.Clone(m.Keywords), Date: m.Date, Created: m.Created})
		}
	}
	slices.SortFunc(out, func(a, b meta.IndexEntry) int { return cmp.Compare(a.UID, b.UID) })
	return out, nil
}

func (r reader) Message(_ context.Context, userID int64, id string) (meta.Message, error) {
	m, ok := r.st().messages[id]
	if !ok || m.UserID != userID {
		return meta.Message{}, notFound(fmt.Sprintf("message %q of user %d", id, userID))
	}
	return cloneMessage(m), nil
}

func (r reader) MessagesByMessageID(_ context.Context, userID int64, messageID string) ([]meta.Message, error) {
	var ms []meta.Message
	for _, m := range r.st().messages {
		if m.UserID == userID && m.MessageID == messageID {
			ms = append(ms, cloneMessage(m))
		}
	}
	slices.SortFunc(ms, func(a, b meta.Message) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	return ms, nil
}

func (r reader) Envelope(_ context.Context, userID int64, id string) ([]byte, error) {
	st := r.st()
	env, ok := st.envelopes[id]
	if m, mine := st.messages[id]; !ok || !mine || m.UserID != userID {
		return nil, notFound(fmt.Sprintf("envelope of %q", id))
	}
	return bytes.Clone(env), nil
}

// listOrder is the listing's order, newest first: Date, Created, ID, all
// descending.
func listOrder(a, b meta.ListKey) int {
	return -cmp.Or(a.Date.Compare(b.Date), a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
}

func (r reader) FolderCounts(_ context.Context, userID int64) (map[meta.Folder]meta.FolderCount, error) {
	out := map[meta.Folder]meta.FolderCount{}
	for _, m := range r.st().messages {
		if m.UserID != userID {
			continue
		}
		c := out[m.Folder]
		c.Total++
		if !m.Seen {
			c.Unseen++
		}
		out[m.Folder] = c
	}
	return out, nil
}

func (r reader) TrashedBefore(_ context.Context, t time.Time, limit int) ([]meta.Message, error) {
	var ms []meta.Message
	for _, m := range r.st().messages {
		if m.Folder == meta.Trash && !m.Trashed.IsZero() && m.Trashed.Before(t) {
			ms = append(ms, m)
		}
	}
	slices.SortFunc(ms, func(a, b meta.Message) int {
		return cmp.Or(a.Trashed.Compare(b.Trashed), strings.Compare(a.ID, b.ID))
	})
	if limit > 0 && len(ms) > limit {
		ms = ms[:limit]
	}
	for i := range ms {
		ms[i] = cloneMessage(ms[i])
	}
	return ms, nil
}

// indexDoc is a message's search entry, as words (meta.SearchWords).
type indexDoc struct {
	from, to, subject, body []string
	attachment              bool
}

// matches reports whether d holds every phrase of q (meta.MatchPhrase).
func (d indexDoc) matches(q meta.SearchQuery) bool {
	all := func(words []string, phrases [][]string) bool {
		for _, p := range phrases {
			if !meta.MatchPhrase(words, p) {
				return false
			}
		}
		return true
	}
	for _, p := range q.Words {
		if !meta.MatchPhrase(d.from, p) && !meta.MatchPhrase(d.to, p) && !meta.MatchPhrase(d.subject, p) && !meta.MatchPhrase(d.body, p) {
			return false
		}
	}
	return all(d.from, q.From) && all(d.to, q.To) && all(d.subject, q.Subject) && (!q.HasAttachment || d.attachment)
}

func (r reader) Search(_ context.Context, userID int64, q meta.SearchQuery) ([]meta.Message, error) {
	st := r.st()
	var ms []meta.Message
	for id, d := range st.index {
		m := st.messages[id]
		if m.UserID != userID || !q.Searched(m.Folder) || !d.matches(q) ||
			!q.Since.IsZero() && m.Date.Before(q.Since) || !q.Until.IsZero() && !m.Date.Before(q.Until) ||
			q.Page != nil && listOrder(meta.KeyOf(m), *q.Page) <= 0 {
			continue
		}
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b meta.Message) int { return listOrder(meta.KeyOf(a), meta.KeyOf(b)) })
	if q.Limit > 0 && len(ms) > q.Limit {
		ms = ms[:q.Limit]
	}
	for i := range ms {
		ms[i] = cloneMessage(ms[i])
	}
	return ms, nil
}

func (r reader) Unindexed(_ context.Context, limit int) ([]meta.Message, error) {
	st := r.st()
	var ms []meta.Message
	for id, m := range st.messages {
		if _, ok := st.index[id]; !ok && (m.Status == meta.StatusSent || m.Status == meta.StatusComplete) {
			ms = append(ms, m)
		}
	}
	slices.SortFunc(ms, func(a, b meta.Message) int { return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID)) })
	if limit > 0 && len(ms) > limit {
		ms = ms[:limit]
	}
	for i := range ms {
		ms[i] = cloneMessage(ms[i])
	}
	return ms, nil
}

func (r reader) Messages(_ context.Context, userID int64, opt meta.ListOptions) ([]meta.Message, error) {
	var ms []meta.Message
	for _, m := range r.st().messages {
		if m.UserID != userID || m.Folder != opt.Folder {
			continue
		}
		if opt.After != nil && listOrder(meta.KeyOf(m), *opt.After) <= 0 {
			continue
		}
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b meta.Message) int { return listOrder(meta.KeyOf(a), meta.KeyOf(b)) })
	if opt.Limit > 0 && len(ms) > opt.Limit {
		ms = ms[:opt.Limit]
	}
	for i := range ms {
		ms[i] = cloneMessage(ms[i])
	}
	return ms, nil
}

func (r reader) Holds(_ context.Context, userID int64, id resource.ID) (bool, error) {
	st := r.st()
	if _, ok := st.uploads[uploadKey{userID, id}]; ok {
		return true, nil
	}
	for _, m := range st.messages {
		if m.UserID == userID && slices.ContainsFunc(m.Refs, func(ref meta.Ref) bool { return ref.ID == id }) {
			return true, nil
		}
	}
	return false, nil
}

func (r reader) Referenced(_ context.Context, id resource.ID) (bool, error) {
	st := r.st()
	for k := range st.uploads {
		if k.digest == id {
			return true, nil
		}
	}
	for _, m := range st.messages {
		if slices.ContainsFunc(m.Refs, func(ref meta.Ref) bool { return ref.ID == id }) {
			return true, nil
		}
	}
	return false, nil
}

// Cursor is the highest Seq given: commits are serialised, so Seq order is
// commit order.
func (r reader) Cursor(context.Context) (int64, error) { return r.st().seq, nil }

func (r reader) Client(_ context.Context, id string) (meta.Client, error) {
	c, ok := r.st().clients[id]
	if !ok {
		return meta.Client{}, notFound("client " + id)
	}
	return cloneClient(c), nil
}

func cloneClient(c meta.Client) meta.Client {
	c.RedirectURIs = slices.Clone(c.RedirectURIs)
	c.JWKS = bytes.Clone(c.JWKS)
	return c
}

func (r reader) Clients(context.Context) ([]meta.Client, error) {
	var cs []meta.Client
	for _, c := range r.st().clients {
		cs = append(cs, cloneClient(c))
	}
	slices.SortFunc(cs, func(a, b meta.Client) int { return strings.Compare(a.ID, b.ID) })
	return cs, nil
}

func (r reader) GrantByHash(_ context.Context, hash []byte) (meta.Grant, error) {
	g, ok := r.st().grants[string(hash)]
	if !ok {
		return meta.Grant{}, notFound("grant")
	}
	g.Hash = bytes.Clone(g.Hash)
	return g, nil
}

func (r reader) GrantByUserCode(_ context.Context, userCode string) (meta.Grant, error) {
	if userCode != "" {
		for _, g := range r.st().grants {
			if g.UserCode == userCode {
				g.Hash = bytes.Clone(g.Hash)
				return g, nil
			}
		}
	}
	return meta.Grant{}, notFound("grant by user code")
}

func (r reader) FamilyRevoked(_ context.Context, family string) (bool, error) {
	_, ok := r.st().families[family]
	return ok, nil
}

func (r reader) Changes(_ context.Context, userID int64, since int64, limit int) ([]meta.Change, error) {
	st := r.st()
	if u, ok := st.users[userID]; ok && since < u.floor {
		return nil, fmt.Errorf("meta/memstore: changes of user %d since %d (kept from %d): %w", userID, since, u.floor, meta.ErrCursorGone)
	}
	var cs []meta.Change
	for _, c := range st.changes {
		if c.UserID == userID && c.Seq > since {
			cs = append(cs, c.Change)
			if limit > 0 && len(cs) == limit {
				break
			}
		}
	}
	return cs, nil
}

func (r reader) Job(_ context.Context, id int64) (meta.Job, error) {
	j, ok := r.st().jobs[id]
	if !ok {
		return meta.Job{}, notFound(fmt.Sprint("job ", id))
	}
	j.Payload = bytes.Clone(j.Payload)
	return j, nil
}

func (r reader) JobByKey(_ context.Context, key string) (meta.Job, error) {
	for _, j := range r.st().jobs {
		if j.Key == key {
			j.Payload = bytes.Clone(j.Payload)
			return j, nil
		}
	}
	return meta.Job{}, notFound("job " + key)
}

func (r reader) Jobs(_ context.Context, kind string, limit int) ([]meta.Job, error) {
	var js []meta.Job
	for _, j := range r.st().jobs {
		if kind == "" || j.Kind == kind {
			j.Payload = bytes.Clone(j.Payload)
			js = append(js, j)
		}
	}
	slices.SortFunc(js, func(a, b meta.Job) int { return -cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID)) })
	if limit > 0 && len(js) > limit {
		js = js[:limit]
	}
	return js, nil
}

func (r reader) JobsByKeyPrefix(_ context.Context, prefix string) ([]meta.Job, error) {
	if prefix == "" {
		return nil, fmt.Errorf("meta/memstore: jobs by key prefix: empty prefix")
	}
	var js []meta.Job
	for _, j := range r.st().jobs {
		if strings.HasPrefix(j.Key, prefix) {
			j.Payload = bytes.Clone(j.Payload)
			js = append(js, j)
		}
	}
	slices.SortFunc(js, func(a, b meta.Job) int { return cmp.Compare(a.ID, b.ID) })
	return js, nil
}

func (r reader) CountJobs(_ context.Context, kind, keyPrefix string) (int, error) {
	n := 0
	for _, j := range r.st().jobs {
		if j.Kind == kind && (j.State == meta.JobQueued || j.State == meta.JobRunning) && strings.HasPrefix(j.Key, keyPrefix) {
			n++
		}
	}
	return n, nil
}

// View runs fn on the state committed when it is called.
func (s *Store) View(_ context.Context, fn func(meta.Reader) error) error {
	st := s.cur.Load()
	return fn(reader{load: func() *state { return st }})
}

// OnCommit sets fn to be called after every commit that appended to users'
// change logs, with those users, before Update returns. nil removes it.
func (s *Store) OnCommit(fn func(users []int64)) {
	if fn == nil {
		s.onCommit.Store(nil)
		return
	}
	s.onCommit.Store(&fn)
}

// Update runs fn on a copy of the state and commits the copy if fn returns
// nil. Updates run one at a time, so fn runs once and must not call Update.
func (s *Store) Update(ctx context.Context, fn func(meta.Tx) error) error {
	var changed []int64
	err := s.write(ctx, func(t *txn) error {
		if err := fn(t); err != nil {
			return err
		}
		changed = t.changed
		return nil
	})
	if err == nil && len(changed) > 0 {
		if f := s.onCommit.Load(); f != nil {
			(*f)(changed)
		}
	}
	return err
}

// write runs fn in a transaction under the write lock; a panic rolls back
// (the copy is dropped) and goes on up.
func (s *Store) write(ctx context.Context, fn func(*txn) error) error {
	if s.closed.Load() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := *s.cur.Load() // maps shared until owned
	t := &txn{st: &next, owned: map[any]bool{}}
	t.reader = reader{load: func() *state { return t.st }}
	if err := fn(t); err != nil {
		return err
	}
	s.cur.Store(t.st)
	return nil
}

// txn implements meta.Tx on a copy of the state.
type txn struct {
	reader
	st      *state
	owned   map[any]bool // the maps of st this transaction copied
	changes bool         // st.changes copied
	changed []int64
}

var _ meta.Tx = (*txn)(nil)

func (t *txn) hasUser(id int64) bool {
	_, ok := t.st.users[id]
	return ok
}

func (t *txn) SetSetting(_ context.Context, key, value string) error {
	own(t.owned, &t.st.settings)[key] = value
	return nil
}

func (t *txn) SetUserSetting(_ context.Context, userID int64, name, value string) error {
	if !t.hasUser(userID) {
		return notFound(fmt.Sprintf("setting %q of user %d", name, userID))
	}
	if value == "" {
		delete(own(t.owned, &t.st.userSettings), userKey{userID, name})
		return nil
	}
	own(t.owned, &t.st.userSettings)[userKey{userID, name}] = value
	return nil
}

func (t *txn) SetEnvelope(_ context.Context, id string, envelope []byte) error {
	if _, ok := t.st.messages[id]; !ok {
		return notFound(fmt.Sprintf("envelope of %q", id))
	}
	own(t.owned, &t.st.envelopes)[id] = bytes.Clone(envelope)
	return nil
}

func (t *txn) AddUser(ctx context.Context, u meta.User) (meta.User, error) {
	if err := rows.CheckTimes(u.Created); err != nil {
		return meta.User{}, fmt.Errorf("meta/memstore: add user %q: %w", u.Address, err)
	}
	if _, err := t.UserByAddress(ctx, u.Address); err == nil {
		return meta.User{}, exists("user " + u.Address)
	}
	if u.Created.IsZero() {
		u.Created = time.Now()
	}
	t.st.nextUser++
	u.ID, u.Created = t.st.nextUser, u.Created.UTC()
	own(t.owned, &t.st.users)[u.ID] = userRow{User: u}
	return u, nil
}

func (t *txn) SetPassword(_ context.Context, userID int64, hash string) error {
	u, ok := t.st.users[userID]
	if !ok {
		return notFound(fmt.Sprint("user ", userID))
	}
	u.PasswordHash = hash
	own(t.owned, &t.st.users)[userID] = u
	return nil
}

// DeleteUser removes the user and everything of theirs.
func (t *txn) DeleteUser(_ context.Context, userID int64) error {
	if !t.hasUser(userID) {
		return notFound(fmt.Sprint("user ", userID))
	}
	delete(own(t.owned, &t.st.users), userID)
	maps.DeleteFunc(own(t.owned, &t.st.tokens), func(_ string, v meta.Token) bool { return v.UserID == userID })
	maps.DeleteFunc(own(t.owned, &t.st.userSettings), func(k userKey, _ string) bool { return k.user == userID })
	maps.DeleteFunc(own(t.owned, &t.st.uploads), func(k uploadKey, _ upload) bool { return k.user == userID })
	maps.DeleteFunc(own(t.owned, &t.st.idempotency), func(k userKey, _ meta.Idempotency) bool { return k.user == userID })
	maps.DeleteFunc(own(t.owned, &t.st.grants), func(_ string, g meta.Grant) bool { return g.UserID == userID })
	envelopes := own(t.owned, &t.st.envelopes)
	index := own(t.owned, &t.st.index)
	maps.DeleteFunc(own(t.owned, &t.st.messages), func(id string, m meta.Message) bool {
		if m.UserID == userID {
			delete(envelopes, id)
			delete(index, id)
			return true
		}
		return false
	})
	t.st.changes = slices.DeleteFunc(t.ownChanges(), func(c change) bool { return c.UserID == userID })
	maps.DeleteFunc(own(t.owned, &t.st.folders), func(k folderKey, _ meta.FolderState) bool { return k.user == userID })
	return nil
}

func (t *txn) AddToken(_ context.Context, tok meta.Token) error {
	if err := rows.CheckTimes(tok.Created, tok.Expires); err != nil {
		return fmt.Errorf("meta/memstore: add token: %w", err)
	}
	if _, ok := t.st.tokens[string(tok.Hash)]; ok {
		return exists("token")
	}
	if !t.hasUser(tok.UserID) {
		return notFound(fmt.Sprint("user ", tok.UserID))
	}
	if tok.Created.IsZero() {
		tok.Created = time.Now()
	}
	tok.Hash = bytes.Clone(tok.Hash)
	own(t.owned, &t.st.tokens)[string(tok.Hash)] = tok
	return nil
}

func (t *txn) DeleteToken(_ context.Context, hash []byte) error {
	if _, ok := t.st.tokens[string(hash)]; !ok {
		return notFound("token")
	}
	delete(own(t.owned, &t.st.tokens), string(hash))
	return nil
}

func (t *txn) AddUpload(_ context.Context, userID int64, ref meta.Ref) error {
	if err := t.refsNotCondemned([]meta.Ref{ref}); err != nil {
		return fmt.Errorf("meta/memstore: add upload for user %d: %w", userID, err)
	}
	if !t.hasUser(userID) {
		return notFound(fmt.Sprint("user ", userID))
	}
	own(t.owned, &t.st.uploads)[uploadKey{userID, ref.ID}] = upload{size: ref.Size, created: time.Now()}
	return nil
}

// ownChanges returns the change log, copied unless copied already.
func (t *txn) ownChanges() []change {
	if !t.changes {
		t.st.changes = slices.Clone(t.st.changes)
		t.changes = true
	}
	return t.st.changes
}

// logChange logs a change of the message in folder, where it has (or had)
// uid, and returns its Seq, the folder's highest modseq now.
func (t *txn) logChange(userID int64, id string, folder meta.Folder, uid uint32, kind meta.ChangeKind) int64 {
	t.st.seq++
	t.st.changes = append(t.ownChanges(), change{meta.Change{Seq: t.st.seq, UserID: userID, MessageID: id, Folder: folder,
		Kind: kind, UID: uid}, time.Now()})
	if !slices.Contains(t.changed, userID) {
		t.changed = append(t.changed, userID)
	}
	fs := t.st.folderState(userID, folder)
	fs.HighestModSeq = t.st.seq
	own(t.owned, &t.st.folders)[folderKey{userID, folder}] = fs
	return t.st.seq
}

// nextUID gives the next UID of the folder.
func (t *txn) nextUID(userID int64, folder meta.Folder) uint32 {
	fs := t.st.folderState(userID, folder)
	uid := fs.UIDNext
	fs.UIDNext++
	own(t.owned, &t.st.folders)[folderKey{userID, folder}] = fs
	return uid
}

// setRefs stores m's refs, each once.
func setRefs(m meta.Message) meta.Message {
	var refs []meta.Ref
	for _, r := range m.Refs {
		if !slices.ContainsFunc(refs, func(x meta.Ref) bool { return x.ID == r.ID }) {
			refs = append(refs, r)
		}
	}
	m.Refs = refs
	m.Placeholder = bytes.Clone(m.Placeholder)
	return m
}

func (t *txn) InsertMessage(_ context.Context, m meta.Message) error {
	m, err := rows.NewMessage(m, time.Now())
	if err != nil {
		return fmt.Errorf("meta/memstore: insert message %q: %w", m.ID, err)
	}
	if _, ok := t.st.messages[m.ID]; ok {
		return exists("message " + m.ID)
	}
	if !t.hasUser(m.UserID) {
		return notFound(fmt.Sprint("user ", m.UserID))
	}
	if err := t.refsNotCondemned(m.Refs); err != nil {
		return fmt.Errorf("meta/memstore: insert message %q: %w", m.ID, err)
	}
	m.UID = t.nextUID(m.UserID, m.Folder)
	m.ModSeq = t.logChange(m.UserID, m.ID, m.Folder, m.UID, meta.Created)
	own(t.owned, &t.st.messages)[m.ID] = setRefs(m)
	return nil
}

func (t *txn) UpdateMessage(_ context.Context, m meta.Message) error {
	m, err := rows.CheckMessage(m)
	if err != nil {
		return fmt.Errorf("meta/memstore: update message %q: %w", m.ID, err)
	}
	old, ok := t.st.messages[m.ID]
	if !ok || old.UserID != m.UserID {
		return notFound(fmt.Sprintf("message %q of user %d", m.ID, m.UserID))
	}
	if m.Created.IsZero() {
		m.Created = old.Created
	}
	if m.Updated.IsZero() {
		m.Updated = time.Now()
	}
	if err := t.refsNotCondemned(m.Refs); err != nil {
		return fmt.Errorf("meta/memstore: update message %q: %w", m.ID, err)
	}
	m.UID = old.UID
	for _, c := range rows.UpdateChanges(old.Folder, m.Folder) {
		if c.NewUID {
			m.UID = t.nextUID(m.UserID, c.Folder)
		}
		m.ModSeq = t.logChange(m.UserID, m.ID, c.Folder, m.UID, c.Kind)
	}
	own(t.owned, &t.st.messages)[m.ID] = setRefs(m)
	return nil
}

func (t *txn) DeleteMessage(_ context.Context, userID int64, id string) error {
	m, ok := t.st.messages[id]
	if !ok || m.UserID != userID {
		return notFound(fmt.Sprintf("message %q of user %d", id, userID))
	}
	delete(own(t.owned, &t.st.messages), id)
	delete(own(t.owned, &t.st.envelopes), id)
	delete(own(t.owned, &t.st.index), id)
	t.logChange(userID, id, m.Folder, m.UID, meta.Deleted)
	return nil
}

func (t *txn) IndexMessage(_ context.Context, userID int64, id string, doc meta.SearchDoc) error {
	m, ok := t.st.messages[id]
	if !ok || m.UserID != userID {
		return notFound(fmt.Sprintf("message %q of user %d", id, userID))
	}
	body := doc.Body
	if len(body) > meta.MaxSearchBody {
		body = body[:meta.MaxSearchBody]
	}
	own(t.owned, &t.st.index)[id] = indexDoc{from: meta.SearchWords(doc.From), to: meta.SearchWords(doc.To),
		subject: meta.SearchWords(doc.Subject), body: meta.SearchWords(body), attachment: doc.HasAttachment}
	return nil
}

func (t *txn) AddClient(_ context.Context, c meta.Client) error {
	if _, ok := t.st.clients[c.ID]; ok {
		return exists("client " + c.ID)
	}
	if c.Created.IsZero() {
		c.Created = time.Now()
	}
	own(t.owned, &t.st.clients)[c.ID] = cloneClient(c)
	return nil
}

func (t *txn) DeleteClient(_ context.Context, id string) error {
	if _, ok := t.st.clients[id]; !ok {
		return notFound("client " + id)
	}
	delete(own(t.owned, &t.st.clients), id)
	maps.DeleteFunc(own(t.owned, &t.st.grants), func(_ string, g meta.Grant) bool { return g.ClientID == id })
	return nil
}

func (t *txn) AddGrant(ctx context.Context, g meta.Grant) error {
	if err := rows.CheckTimes(g.Created, g.Expires); err != nil {
		return fmt.Errorf("meta/memstore: add grant: %w", err)
	}
	if _, ok := t.st.grants[string(g.Hash)]; ok {
		return exists("grant")
	}
	if _, err := t.GrantByUserCode(ctx, g.UserCode); err == nil {
		return exists("grant with that user code")
	}
	if _, ok := t.st.clients[g.ClientID]; !ok || (g.UserID != 0 && !t.hasUser(g.UserID)) {
		return notFound("the grant's client or user")
	}
	if g.Created.IsZero() {
		g.Created = time.Now()
	}
	g.Hash = bytes.Clone(g.Hash)
	own(t.owned, &t.st.grants)[string(g.Hash)] = g
	return nil
}

func (t *txn) UpdateGrant(_ context.Context, g meta.Grant) error {
	if err := rows.CheckTimes(g.Expires); err != nil {
		return fmt.Errorf("meta/memstore: update grant: %w", err)
	}
	cur, ok := t.st.grants[string(g.Hash)]
	if !ok || (g.UserID != 0 && !t.hasUser(g.UserID)) {
		return notFound("grant")
	}
	cur.Used, cur.Revoked, cur.UserID, cur.JKT, cur.Expires = g.Used, g.Revoked, g.UserID, g.JKT, g.Expires
	own(t.owned, &t.st.grants)[string(g.Hash)] = cur
	return nil
}

func (t *txn) RevokeFamily(_ context.Context, family string, until time.Time) error {
	grants := own(t.owned, &t.st.grants)
	for h, g := range grants {
		if g.Family == family {
			g.Revoked = true
			grants[h] = g
		}
	}
	fs := own(t.owned, &t.st.families)
	if old, ok := fs[family]; !ok || until.After(old) {
		fs[family] = until
	}
	return nil
}

func (t *txn) AddJob(ctx context.Context, j meta.Job) (meta.Job, error) {
	j, err := rows.NewJob(j, time.Now())
	if err != nil {
		return meta.Job{}, fmt.Errorf("meta/memstore: add job %q: %w", j.Key, err)
	}
	if _, err := t.JobByKey(ctx, j.Key); err == nil {
		return meta.Job{}, exists("job " + j.Key)
	}
	t.st.nextJob++
	j.ID = t.st.nextJob
	j.Payload = bytes.Clone(j.Payload)
	own(t.owned, &t.st.jobs)[j.ID] = j
	return j, nil
}

func (t *txn) UpdateJob(_ context.Context, j meta.Job) error {
	j, err := rows.JobUpdate(j, time.Now())
	if err != nil {
		return fmt.Errorf("meta/memstore: update job %d: %w", j.ID, err)
	}
	cur, ok := t.st.jobs[j.ID]
	if !ok {
		return notFound(fmt.Sprint("job ", j.ID))
	}
	cur.State, cur.Attempts, cur.NextTry, cur.LastError, cur.Payload, cur.Updated =
		j.State, j.Attempts, j.NextTry, j.LastError, bytes.Clone(j.Payload), j.Updated
	own(t.owned, &t.st.jobs)[j.ID] = cur
	return nil
}

func (t *txn) Idempotency(_ context.Context, userID int64, key string) (meta.Idempotency, error) {
	r, ok := t.st.idempotency[userKey{userID, key}]
	if !ok {
		return meta.Idempotency{}, notFound(fmt.Sprint("idempotency key of user ", userID))
	}
	r.Result = bytes.Clone(r.Result)
	return r, nil
}

func (t *txn) PutIdempotency(_ context.Context, r meta.Idempotency) error {
	if err := rows.CheckTimes(r.Created, r.Expires); err != nil {
		return fmt.Errorf("meta/memstore: idempotency key of user %d: %w", r.UserID, err)
	}
	if !t.hasUser(r.UserID) {
		return notFound(fmt.Sprint("user ", r.UserID))
	}
	idem := own(t.owned, &t.st.idempotency)
	maps.DeleteFunc(idem, func(k userKey, v meta.Idempotency) bool {
		return k.user == r.UserID && !v.Expires.After(r.Created)
	})
	r.Result = bytes.Clone(r.Result)
	idem[userKey{r.UserID, r.Key}] = r
	return nil
}

// UseOnce implements meta.Once under a mutex of its own.
func (s *Store) UseOnce(_ context.Context, key string, expires time.Time) (bool, error) {
	if key == "" || len(key) > 512 {
		return false, errors.New("meta/memstore: once: key must be 1 to 512 bytes")
	}
	now := time.Now()
	s.onceMu.Lock()
	defer s.onceMu.Unlock()
	if old, ok := s.once[key]; ok && old.After(now) {
		return false, nil
	}
	maps.DeleteFunc(s.once, func(_ string, exp time.Time) bool { return !exp.After(now) })
	s.once[key] = expires
	return true, nil
}

// count runs fn in a transaction and returns the number it reports.
func (s *Store) count(ctx context.Context, fn func(*txn) int) (int, error) {
	var n int
	err := s.write(ctx, func(t *txn) error { n = fn(t); return nil })
	return n, err
}

func (s *Store) PruneUploads(ctx context.Context, before time.Time) (int, error) {
	return s.count(ctx, func(t *txn) int {
		ups := own(t.owned, &t.st.uploads)
		n := len(ups)
		maps.DeleteFunc(ups, func(_ uploadKey, u upload) bool { return u.created.Before(before) })
		return n - len(ups)
	})
}

// PruneChanges raises each affected user's floor to the highest seq
// pruned from their log.
func (s *Store) PruneChanges(ctx context.Context, before time.Time) (int, error) {
	return s.count(ctx, func(t *txn) int {
		users := own(t.owned, &t.st.users)
		n := len(t.st.changes)
		t.st.changes = slices.DeleteFunc(t.ownChanges(), func(c change) bool {
			if !c.at.Before(before) {
				return false
			}
			if u, ok := users[c.UserID]; ok && c.Seq > u.floor {
				u.floor = c.Seq
				users[c.UserID] = u
			}
			return true
		})
		return n - len(t.st.changes)
	})
}

func (s *Store) PruneGrants(ctx context.Context, before time.Time) (int, error) {
	return s.count(ctx, func(t *txn) int {
		gs, fs := own(t.owned, &t.st.grants), own(t.owned, &t.st.families)
		n := len(gs) + len(fs)
		maps.DeleteFunc(gs, func(_ string, g meta.Grant) bool { return g.Expires.Before(before) })
		maps.DeleteFunc(fs, func(_ string, until time.Time) bool { return until.Before(before) })
		return n - len(gs) - len(fs)
	})
}

// ClaimJobs runs under the write lock, so no two callers see one job due.
func (s *Store) ClaimJobs(ctx context.Context, holder, kind string, now time.Time, n int, lease time.Duration) ([]meta.Job, error) {
	if n <= 0 {
		return nil, nil
	}
	if lease <= 0 {
		return nil, fmt.Errorf("meta/memstore: claim %q jobs: lease %v is not positive", kind, lease)
	}
	if len(holder) > rows.MaxName {
		return nil, fmt.Errorf("meta/memstore: claim %q jobs: holder of %d bytes", kind, len(holder))
	}
	var claimed []meta.Job
	err := s.write(ctx, func(t *txn) error {
		var due []meta.Job
		for _, j := range t.st.jobs {
			if j.Kind == kind && (j.State == meta.JobQueued || j.State == meta.JobRunning) && !j.NextTry.After(now) {
				due = append(due, j)
			}
		}
		slices.SortFunc(due, func(a, b meta.Job) int { return cmp.Or(a.NextTry.Compare(b.NextTry), cmp.Compare(a.ID, b.ID)) })
		jobs := own(t.owned, &t.st.jobs)
		for _, j := range due[:min(n, len(due))] {
			j.State, j.Attempts, j.NextTry, j.Updated, j.Holder = meta.JobRunning, j.Attempts+1, now.Add(lease), now, holder
			jobs[j.ID] = j
			j.Payload = bytes.Clone(j.Payload)
			claimed = append(claimed, j)
		}
		return nil
	})
	return claimed, err
}

// RenewJob runs under the write lock.
func (s *Store) RenewJob(ctx context.Context, j meta.Job, now time.Time, lease time.Duration) (meta.Job, error) {
	if lease <= 0 {
		return meta.Job{}, fmt.Errorf("meta/memstore: renew job %d: lease %v is not positive", j.ID, lease)
	}
	var got meta.Job
	err := s.write(ctx, func(t *txn) error {
		cur, ok := t.st.jobs[j.ID]
		if !ok || cur.State != meta.JobRunning || cur.Attempts != j.Attempts || cur.Holder != j.Holder {
			return meta.ErrLeaseLost
		}
		cur.NextTry, cur.Updated = now.Add(lease), now
		own(t.owned, &t.st.jobs)[j.ID] = cur
		got = cur
		got.Payload = bytes.Clone(cur.Payload)
		return nil
	})
	if err != nil {
		return meta.Job{}, fmt.Errorf("meta/memstore: renew job %d: %w", j.ID, err)
	}
	return got, nil
}

func (s *Store) ReleaseJobs(ctx context.Context, holder string, now time.Time) (int, error) {
	return s.count(ctx, func(t *txn) int {
		n := 0
		for id, j := range t.st.jobs {
			if j.State == meta.JobRunning && j.Holder == holder {
				j.State, j.NextTry, j.Updated = meta.JobQueued, now, now
				own(t.owned, &t.st.jobs)[id] = j
				n++
			}
		}
		return n
	})
}

// lock is a held meta.Locks lock.
type lock struct {
	holder string
	until  time.Time
}

func (s *Store) Lock(ctx context.Context, name, holder string, now time.Time, lease time.Duration) (bool, error) {
	until, err := rows.CheckLock(name, holder, now, lease)
	if err != nil {
		return false, fmt.Errorf("meta/memstore: lock %q: %w", name, err)
	}
	if s.closed.Load() {
		return false, errClosed
	}
	s.locksMu.Lock()
	defer s.locksMu.Unlock()
	if l, ok := s.locks[name]; ok && l.holder != holder && now.Before(l.until) {
		return false, nil
	}
	s.locks[name] = lock{holder, until}
	return true, nil
}

func (s *Store) Unlock(ctx context.Context, name, holder string) error {
	s.locksMu.Lock()
	defer s.locksMu.Unlock()
	if s.locks[name].holder == holder {
		delete(s.locks, name)
	}
	return nil
}

func (s *Store) UnlockAll(ctx context.Context, holder string) (int, error) {
	s.locksMu.Lock()
	defer s.locksMu.Unlock()
	n := len(s.locks)
	maps.DeleteFunc(s.locks, func(_ string, l lock) bool { return l.holder == holder })
	return n - len(s.locks), nil
}

func (s *Store) PruneJobs(ctx context.Context, before time.Time) (int, error) {
	return s.count(ctx, func(t *txn) int {
		jobs := own(t.owned, &t.st.jobs)
		n := len(jobs)
		maps.DeleteFunc(jobs, func(_ int64, j meta.Job) bool {
			return (j.State == meta.JobDone || j.State == meta.JobFailed) && j.Updated.Before(before)
		})
		return n - len(jobs)
	})
}
