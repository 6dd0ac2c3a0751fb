// Package rows holds what the SQL implementations of meta.Store (meta/sqlite,
// meta/postgres) share apart from their SQL: how times are stored, the
// checks and defaults a row gets before it is written, and the reading of
// embedded, numbered migrations. One copy, so that the two stores cannot
// drift apart in what they accept.
package rows

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pullmail/pullmail/meta"
)

// Stored times are int64 Unix nanoseconds: years 1678 to 2262.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// CheckTimes returns an error naming the first of the times that cannot be
// stored. The zero time can (as 0); the Unix epoch itself reads back as the
// zero time.
func CheckTimes(times ...time.Time) error {
	for _, t := range times {
		if !t.IsZero() && (t.Before(minTime) || t.After(maxTime)) {
			return fmt.Errorf("time %s out of the storable range (%d to %d)", t, minTime.Year(), maxTime.Year())
		}
	}
	return nil
}

// Nanos is t as stored: Unix nanoseconds, 0 for the zero time.
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// FromNanos is the inverse of Nanos, in UTC.
func FromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// NewMessage checks a message for InsertMessage and sets Created and
// Updated to now when they are zero.
func NewMessage(m meta.Message, now time.Time) (meta.Message, error) {
	m, err := CheckMessage(m)
	if err != nil {
		return m, err
	}
	if m.Created.IsZero() {
		m.Created = now
	}
	if m.Updated.IsZero() {
		m.Updated = now
	}
	return m, nil
}

// CheckMessage checks what a stored message must have (a known folder,
// storable times, keywords) and returns it with its keywords normalized
// (meta.NormalizeKeywords) and its UID and ModSeq cleared: the store
// gives those.
func CheckMessage(m meta.Message) (meta.Message, error) {
	if !m.Folder.Valid() {
		return m, fmt.Errorf("invalid folder %q", m.Folder)
	}
	ks, err := meta.NormalizeKeywords(m.Keywords)
	if err != nil {
		return m, err
	}
	m.Keywords, m.UID, m.ModSeq = ks, 0, 0
	return m, CheckTimes(m.Date, m.Created, m.Updated)
}

// JoinKeywords is how a row holds normalized keywords: space-separated (a
// keyword has no space).
func JoinKeywords(ks []string) string { return strings.Join(ks, " ") }

// SplitKeywords reads JoinKeywords's form.
func SplitKeywords(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

// NewJob checks a job for AddJob and fills in its defaults (meta.Tx.AddJob):
// State queued, NextTry and Created now, Updated Created; times in UTC.
func NewJob(j meta.Job, now time.Time) (meta.Job, error) {
	if j.Kind == "" || j.Key == "" {
		return j, errors.New("a job needs a kind and a key")
	}
	if j.State == "" {
		j.State = meta.JobQueued
	}
	if err := checkJob(j); err != nil {
		return j, err
	}
	if err := CheckTimes(j.Created, j.Expires); err != nil {
		return j, err
	}
	if j.NextTry.IsZero() {
		j.NextTry = now
	}
	if j.Created.IsZero() {
		j.Created = now
	}
	if j.Updated.IsZero() {
		j.Updated = j.Created
	}
	j.NextTry, j.Created, j.Updated = j.NextTry.UTC(), j.Created.UTC(), j.Updated.UTC()
	if !j.Expires.IsZero() {
		j.Expires = j.Expires.UTC()
	}
	return j, nil
}

// JobUpdate checks a job for UpdateJob and sets Updated to now when it is
// zero.
func JobUpdate(j meta.Job, now time.Time) (meta.Job, error) {
	if err := checkJob(j); err != nil {
		return j, err
	}
	if j.Updated.IsZero() {
		j.Updated = now
	}
	return j, nil
}

func checkJob(j meta.Job) error {
	if !j.State.Valid() {
		return fmt.Errorf("invalid state %q", j.State)
	}
	if j.Attempts < 0 {
		return fmt.Errorf("negative attempts %d", j.Attempts)
	}
	if len(j.Holder) > MaxName {
		return fmt.Errorf("holder of %d bytes, more than %d", len(j.Holder), MaxName)
	}
	return CheckTimes(j.NextTry, j.Updated)
}

// MaxName is the longest lock name and holder (meta.Locks) in bytes.
const MaxName = 512

// CheckLock checks the arguments of meta.Locks.Lock and returns when the
// lease ends.
func CheckLock(name, holder string, now time.Time, lease time.Duration) (time.Time, error) {
	if name == "" || holder == "" {
		return time.Time{}, errors.New("a lock needs a name and a holder")
	}
	if len(name) > MaxName || len(holder) > MaxName {
		return time.Time{}, fmt.Errorf("lock name or holder longer than %d bytes", MaxName)
	}
	if lease <= 0 {
		return time.Time{}, fmt.Errorf("lease %v is not positive", lease)
	}
	until := now.Add(lease)
	return until, CheckTimes(now, until)
}

// Migration is one numbered schema step, migrations/NNNN_name.sql.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations reads the files of dir in fsys as migrations, in order. Their
// numbers must run 1, 2, 3… without gaps: a build that ships a gap is a bug.
func Migrations(fsys fs.FS, dir string) ([]Migration, error) {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range ents {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || path.Ext(name) != ".sql" {
			return nil, fmt.Errorf("migration file %q is not named NNNN_name.sql", name)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %q: want number %d", m.Name, i+1)
		}
	}
	return ms, nil
}

// Scanner is a row of a result: *sql.Row, *sql.Rows, pgx.Row, pgx.Rows.
type Scanner interface{ Scan(dest ...any) error }

// The Scan functions read a row of the columns the stores select, in this
// order, and return the row's error as the driver gave it.

// ScanUser reads id, address, password_hash, created.
func ScanUser(row Scanner) (meta.User, error) {
	var u meta.User
	var created int64
	if err := row.Scan(&u.ID, &u.Address, &u.PasswordHash, &created); err != nil {
		return meta.User{}, err
	}
	u.Created = FromNanos(created)
	return u, nil
}

// ScanJob reads id, kind, key, payload, state, attempts, next_try,
// last_error, created, updated, expires, holder, then the extra columns
// into extra.
func ScanJob(row Scanner, extra ...any) (meta.Job, error) {
	var j meta.Job
	var state string
	var nextTry, created, updated, expires int64
	dest := append([]any{&j.ID, &j.Kind, &j.Key, &j.Payload, &state, &j.Attempts, &nextTry, &j.LastError,
		&created, &updated, &expires, &j.Holder}, extra...)
	if err := row.Scan(dest...); err != nil {
		return meta.Job{}, err
	}
	j.State = meta.JobState(state)
	j.NextTry, j.Created, j.Updated, j.Expires = FromNanos(nextTry), FromNanos(created), FromNanos(updated), FromNanos(expires)
	return j, nil
}

// ScanGrant reads hash, kind, family, client_id, user_id (0 for none),
// scope, redirect_uri, challenge, jkt, user_code, created, expires, used,
// revoked.
func ScanGrant(row Scanner) (meta.Grant, error) {
	var g meta.Grant
	var kind string
	var created, expires int64
	if err := row.Scan(&g.Hash, &kind, &g.Family, &g.ClientID, &g.UserID, &g.Scope, &g.RedirectURI, &g.Challenge,
		&g.JKT, &g.UserCode, &created, &expires, &g.Used, &g.Revoked); err != nil {
		return meta.Grant{}, err
	}
	g.Kind, g.Created, g.Expires = meta.GrantKind(kind), FromNanos(created), FromNanos(expires)
	return g, nil
}

// Logged is a change an UpdateMessage logs.
type Logged struct {
	Folder meta.Folder
	Kind   meta.ChangeKind
	// NewUID says the change is in the new folder, where the message takes
	// a new UID; otherwise it keeps (or had) its old one.
	NewUID bool
}

// UpdateChanges returns what UpdateMessage logs for a message moving from
// folder old to folder new (maybe the same), in order: Updated in the
// folder, or Deleted from the old folder and Created in the new.
func UpdateChanges(old, new meta.Folder) []Logged {
	if old == new {
		return []Logged{{new, meta.Updated, false}}
	}
	return []Logged{{old, meta.Deleted, false}, {new, meta.Created, true}}
}
