package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/internal/rows"
)

const clientColumns = `id, name, public, redirect_uris, jwks, created`

func scanClient(row scanner) (meta.Client, error) {
	var c meta.Client
	var created int64
	if err := row.Scan(&c.ID, &c.Name, &c.Public, &c.RedirectURIs, &c.JWKS, &created); err != nil {
		return meta.Client{}, mapErr(err)
	}
	c.Created = fromNanos(created)
	return c, nil
}

func (r reader) Client(ctx context.Context, id string) (meta.Client, error) {
	c, err := scanClient(r.q.QueryRow(ctx, `SELECT `+clientColumns+` FROM clients WHERE id = $1`, id))
	if err != nil {
		return meta.Client{}, fmt.Errorf("meta/postgres: client %q: %w", id, err)
	}
	return c, nil
}

func (r reader) Clients(ctx context.Context) ([]meta.Client, error) {
	cs, err := collect(ctx, r.q, scanClient, `SELECT `+clientColumns+` FROM clients ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: clients: %w", err)
	}
	return cs, nil
}

const grantColumns = `hash, kind, family, client_id, coalesce(user_id, 0), scope, redirect_uri, challenge, jkt,
	user_code, created, expires, used, revoked`

func scanGrant(row scanner) (meta.Grant, error) {
	g, err := rows.ScanGrant(row)
	return g, mapErr(err)
}

func (r reader) GrantByHash(ctx context.Context, hash []byte) (meta.Grant, error) {
	g, err := scanGrant(r.q.QueryRow(ctx, `SELECT `+grantColumns+` FROM grants WHERE hash = $1`, hash))
	if err != nil {
		return meta.Grant{}, fmt.Errorf("meta/postgres: grant: %w", err)
	}
	return g, nil
}

func (r reader) GrantByUserCode(ctx context.Context, userCode string) (meta.Grant, error) {
	if userCode == "" {
		return meta.Grant{}, fmt.Errorf("meta/postgres: grant by user code: %w", meta.ErrNotFound)
	}
	g, err := scanGrant(r.q.QueryRow(ctx, `SELECT `+grantColumns+` FROM grants WHERE user_code = $1`, userCode))
	if err != nil {
		return meta.Grant{}, fmt.Errorf("meta/postgres: grant by user code: %w", err)
	}
	return g, nil
}

func (r reader) FamilyRevoked(ctx context.Context, family string) (bool, error) {
	var ok bool
	err := r.q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM revoked_families WHERE family = $1)`, family).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("meta/postgres: family revoked: %w", err)
	}
	return ok, nil
}

func (t *txn) AddClient(ctx context.Context, c meta.Client) error {
	if c.Created.IsZero() {
		c.Created = time.Now()
	}
	uris := c.RedirectURIs
	if uris == nil {
		uris = []string{}
	}
	tag, err := t.q.Exec(ctx, `INSERT INTO clients (`+clientColumns+`) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT DO NOTHING`, c.ID, c.Name, c.Public, uris, c.JWKS, nanos(c.Created))
	if err == nil && tag.RowsAffected() == 0 {
		err = meta.ErrExists
	}
	if err != nil {
		return fmt.Errorf("meta/postgres: add client %q: %w", c.ID, mapErr(err))
	}
	return nil
}

// DeleteClient relies on ON DELETE CASCADE for the client's grants.
func (t *txn) DeleteClient(ctx context.Context, id string) error {
	if err := one(t.q.Exec(ctx, `DELETE FROM clients WHERE id = $1`, id)); err != nil {
		return fmt.Errorf("meta/postgres: delete client %q: %w", id, err)
	}
	return nil
}

// nullUser is a grant's user id as stored: NULL for none yet.
func nullUser(id int64) *int64 {
	if id == 0 {
		return nil
	}
	return &id
}

// grantParents holds when the grant's client and (if any) user exist.
const grantParents = `SELECT 1 WHERE EXISTS (SELECT 1 FROM clients WHERE id = $1)
	AND ($2::bigint IS NULL OR EXISTS (SELECT 1 FROM users WHERE id = $2))`

// AddGrant: a taken hash or live user code is meta.ErrExists; a grant of
// no such client or user, meta.ErrNotFound.
func (t *txn) AddGrant(ctx context.Context, g meta.Grant) error {
	if err := checkTimes(g.Created, g.Expires); err != nil {
		return fmt.Errorf("meta/postgres: add grant: %w", err)
	}
	if g.Created.IsZero() {
		g.Created = time.Now()
	}
	tag, err := t.q.Exec(ctx, `INSERT INTO grants (client_id, user_id, hash, kind, family, scope, redirect_uri,
		challenge, jkt, user_code, created, expires, used, revoked)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
		WHERE EXISTS (`+grantParents+`) ON CONFLICT DO NOTHING`,
		g.ClientID, nullUser(g.UserID), g.Hash, string(g.Kind), g.Family, g.Scope, g.RedirectURI, g.Challenge, g.JKT,
		g.UserCode, nanos(g.Created), nanos(g.Expires), g.Used, g.Revoked)
	if err == nil && tag.RowsAffected() == 0 {
		err = t.orMissing(ctx, grantParents, g.ClientID, nullUser(g.UserID))
	}
	if err != nil {
		return fmt.Errorf("meta/postgres: add grant: %w", mapErr(err))
	}
	return nil
}

// UpdateGrant: a user that does not exist is meta.ErrNotFound, like a
// grant that does not.
func (t *txn) UpdateGrant(ctx context.Context, g meta.Grant) error {
	if err := checkTimes(g.Expires); err != nil {
		return fmt.Errorf("meta/postgres: update grant: %w", err)
	}
	err := one(t.q.Exec(ctx, `UPDATE grants SET used = $1, revoked = $2, user_id = $3, jkt = $4, expires = $5
		WHERE hash = $6 AND ($3::bigint IS NULL OR EXISTS (SELECT 1 FROM users WHERE id = $3))`,
		g.Used, g.Revoked, nullUser(g.UserID), g.JKT, nanos(g.Expires), g.Hash))
	if err != nil {
		return fmt.Errorf("meta/postgres: update grant: %w", err)
	}
	return nil
}

func (t *txn) RevokeFamily(ctx context.Context, family string, until time.Time) error {
	if err := checkTimes(until); err != nil {
		return fmt.Errorf("meta/postgres: revoke family: %w", err)
	}
	if _, err := t.q.Exec(ctx, `UPDATE grants SET revoked = true WHERE family = $1`, family); err != nil {
		return fmt.Errorf("meta/postgres: revoke family: %w", mapErr(err))
	}
	_, err := t.q.Exec(ctx, `INSERT INTO revoked_families (family, until) VALUES ($1, $2)
		ON CONFLICT (family) DO UPDATE SET until = greatest(revoked_families.until, excluded.until)`, family, nanos(until))
	if err != nil {
		return fmt.Errorf("meta/postgres: revoke family: %w", mapErr(err))
	}
	return nil
}

// PruneGrants deletes grants that expired before the time and revoked
// families remembered until before it, in one statement, and returns how
// many rows went.
func (s *Store) PruneGrants(ctx context.Context, before time.Time) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `WITH g AS (DELETE FROM grants WHERE expires < $1 RETURNING 1),
		f AS (DELETE FROM revoked_families WHERE until < $1 RETURNING 1)
		SELECT (SELECT count(*) FROM g) + (SELECT count(*) FROM f)`, nanos(before)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("meta/postgres: prune grants: %w", err)
	}
	return n, nil
}

// pruneEvery is how many UseOnce calls pass between sweeps of expired keys.
const pruneEvery = 1024

// UseOnce implements meta.Once with one INSERT … ON CONFLICT statement in
// READ COMMITTED: of two callers racing with one key, one inserts and the
// other waits for its row, re-checks the condition on it (not expired) and
// updates nothing, so they get one true and one false.
func (s *Store) UseOnce(ctx context.Context, key string, expires time.Time) (bool, error) {
	if key == "" || len(key) > 512 {
		return false, errors.New("meta/postgres: once: key must be 1 to 512 bytes")
	}
	now := nanos(time.Now())
	if s.onceCalls.Add(1)%pruneEvery == 0 {
		if _, err := s.pool.Exec(ctx, `DELETE FROM once WHERE expires <= $1`, now); err != nil {
			return false, fmt.Errorf("meta/postgres: once: %w", err)
		}
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO once (key, expires) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET expires = excluded.expires WHERE once.expires <= $3`, key, nanos(expires), now)
	if err != nil {
		return false, fmt.Errorf("meta/postgres: once: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}
