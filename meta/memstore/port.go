package memstore

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/internal/rows"
)

// The copy of a whole store (meta/port.go): the memory store is a source
// and a target like the database stores, so that package backup's tests
// run without a database.

var (
	_ meta.Exporter = reader{}
	_ meta.Loader   = (*txn)(nil)
)

func (r reader) Settings(context.Context) (map[string]string, error) {
	m := maps.Clone(r.st().settings)
	if m == nil {
		m = map[string]string{}
	}
	return m, nil
}

func (r reader) UserSettings(_ context.Context, userID int64) (map[string]string, error) {
	m := map[string]string{}
	for k, v := range r.st().userSettings {
		if k.user == userID {
			m[k.name] = v
		}
	}
	return m, nil
}

func (r reader) Tokens(context.Context) ([]meta.Token, error) {
	var ts []meta.Token
	for _, t := range r.st().tokens {
		t.Hash = bytes.Clone(t.Hash)
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b meta.Token) int { return bytes.Compare(a.Hash, b.Hash) })
	return ts, nil
}

func (r reader) Uploads(context.Context) ([]meta.Upload, error) {
	var us []meta.Upload
	for k, u := range r.st().uploads {
		us = append(us, meta.Upload{UserID: k.user, Ref: meta.Ref{ID: k.digest, Size: u.size}, Created: u.created})
	}
	slices.SortFunc(us, func(a, b meta.Upload) int {
		return cmp.Or(cmp.Compare(a.UserID, b.UserID), strings.Compare(string(a.Ref.ID), string(b.Ref.ID)))
	})
	return us, nil
}

func (r reader) Grants(context.Context) ([]meta.Grant, error) {
	var gs []meta.Grant
	for _, g := range r.st().grants {
		g.Hash = bytes.Clone(g.Hash)
		gs = append(gs, g)
	}
	slices.SortFunc(gs, func(a, b meta.Grant) int { return bytes.Compare(a.Hash, b.Hash) })
	return gs, nil
}

func (r reader) RevokedFamilies(context.Context) (map[string]time.Time, error) {
	m := maps.Clone(r.st().families)
	if m == nil {
		m = map[string]time.Time{}
	}
	return m, nil
}

func (r reader) AllMessages(_ context.Context, after string, limit int) ([]meta.Message, error) {
	var ms []meta.Message
	for id, m := range r.st().messages {
		if id > after {
			ms = append(ms, cloneMessage(m))
		}
	}
	slices.SortFunc(ms, func(a, b meta.Message) int { return strings.Compare(a.ID, b.ID) })
	if limit > 0 && len(ms) > limit {
		ms = ms[:limit]
	}
	return ms, nil
}

// LoadUser adds the user with its ID; AddUser goes on above the highest.
func (t *txn) LoadUser(ctx context.Context, u meta.User) error {
	if err := rows.CheckTimes(u.Created); err != nil {
		return fmt.Errorf("meta/memstore: load user %q: %w", u.Address, err)
	}
	if _, err := t.UserByAddress(ctx, u.Address); err == nil || t.hasUser(u.ID) {
		return exists("user " + u.Address)
	}
	u.Created = u.Created.UTC()
	own(t.owned, &t.st.users)[u.ID] = userRow{User: u}
	t.st.nextUser = max(t.st.nextUser, u.ID)
	return nil
}

func (t *txn) LoadUpload(_ context.Context, up meta.Upload) error {
	if err := t.refsNotCondemned([]meta.Ref{up.Ref}); err != nil {
		return fmt.Errorf("meta/memstore: load upload for user %d: %w", up.UserID, err)
	}
	if err := rows.CheckTimes(up.Created); err != nil {
		return fmt.Errorf("meta/memstore: load upload for user %d: %w", up.UserID, err)
	}
	if !t.hasUser(up.UserID) {
		return notFound(fmt.Sprint("user ", up.UserID))
	}
	own(t.owned, &t.st.uploads)[uploadKey{up.UserID, up.Ref.ID}] = upload{size: up.Ref.Size, created: up.Created}
	return nil
}

// ResetFeed moves the sequence past seq, drops the whole log (every entry
// is below the new cursor) and raises every floor to it.
func (t *txn) ResetFeed(_ context.Context, seq int64) (int64, error) {
	next := max(t.st.seq, seq) + 1
	t.st.seq = next
	t.st.changes = slices.DeleteFunc(t.ownChanges(), func(c change) bool { return c.Seq < next })
	users := own(t.owned, &t.st.users)
	for id, u := range users {
		u.floor = next
		users[id] = u
	}
	return next, nil
}

func (r reader) FolderStates(context.Context) ([]meta.UserFolder, error) {
	var out []meta.UserFolder
	for k, fs := range r.st().folders {
		out = append(out, meta.UserFolder{UserID: k.user, Folder: k.folder, State: fs})
	}
	slices.SortFunc(out, func(a, b meta.UserFolder) int {
		return cmp.Or(cmp.Compare(a.UserID, b.UserID), strings.Compare(string(a.Folder), string(b.Folder)))
	})
	return out, nil
}

func (t *txn) LoadMessage(_ context.Context, m meta.Message) error {
	uid, modseq := m.UID, m.ModSeq
	m, err := rows.NewMessage(m, time.Now())
	if err != nil {
		return fmt.Errorf("meta/memstore: load message %q: %w", m.ID, err)
	}
	if _, ok := t.st.messages[m.ID]; ok {
		return exists("message " + m.ID)
	}
	if !t.hasUser(m.UserID) {
		return notFound(fmt.Sprint("user ", m.UserID))
	}
	if err := t.refsNotCondemned(m.Refs); err != nil {
		return fmt.Errorf("meta/memstore: load message %q: %w", m.ID, err)
	}
	m.UID, m.ModSeq = uid, modseq
	own(t.owned, &t.st.messages)[m.ID] = setRefs(m)
	return nil
}

func (t *txn) LoadFolderState(_ context.Context, f meta.UserFolder) error {
	if !t.hasUser(f.UserID) {
		return notFound(fmt.Sprint("user ", f.UserID))
	}
	fs := t.st.folderState(f.UserID, f.Folder)
	fs.UIDNext, fs.HighestModSeq = f.State.UIDNext, f.State.HighestModSeq
	own(t.owned, &t.st.folders)[folderKey{f.UserID, f.Folder}] = fs
	return nil
}
