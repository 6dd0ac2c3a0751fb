package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/internal/rows"
)

func (r reader) Client(ctx context.Context, id string) (meta.Client, error) {
	c, err := scanClient(r.q.QueryRowContext(ctx, `SELECT `+clientColumns+` FROM clients WHERE id = ?`, id))
	if err != nil {
		return meta.Client{}, fmt.Errorf("meta/sqlite: client %q: %w", id, err)
	}
	return c, nil
}

func (r reader) Clients(ctx context.Context) ([]meta.Client, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT `+clientColumns+` FROM clients ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: clients: %w", err)
	}
	defer rows.Close()
	var out []meta.Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, fmt.Errorf("meta/sqlite: clients: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

const clientColumns = `id, name, public, redirect_uris, jwks, created`

func scanClient(row interface{ Scan(...any) error }) (meta.Client, error) {
	var c meta.Client
	var uris string
	var created int64
	if err := row.Scan(&c.ID, &c.Name, &c.Public, &uris, &c.JWKS, &created); err != nil {
		return meta.Client{}, mapErr(err)
	}
	if err := json.Unmarshal([]byte(uris), &c.RedirectURIs); err != nil {
		return meta.Client{}, fmt.Errorf("redirect URIs: %w", err)
	}
	c.Created = fromNanos(created)
	return c, nil
}

const grantColumns = `hash, kind, family, client_id, coalesce(user_id, 0), scope, redirect_uri, challenge, jkt,
	user_code, created, expires, used, revoked`

func scanGrant(row interface{ Scan(...any) error }) (meta.Grant, error) {
	g, err := rows.ScanGrant(row)
	return g, mapErr(err)
}

func (r reader) GrantByHash(ctx context.Context, hash []byte) (meta.Grant, error) {
	g, err := scanGrant(r.q.QueryRowContext(ctx, `SELECT `+grantColumns+` FROM grants WHERE hash = ?`, hash))
	if err != nil {
		return meta.Grant{}, fmt.Errorf("meta/sqlite: grant: %w", err)
	}
	return g, nil
}

func (r reader) GrantByUserCode(ctx context.Context, userCode string) (meta.Grant, error) {
	if userCode == "" {
		return meta.Grant{}, fmt.Errorf("meta/sqlite: grant by user code: %w", meta.ErrNotFound)
	}
	g, err := scanGrant(r.q.QueryRowContext(ctx, `SELECT `+grantColumns+` FROM grants WHERE user_code = ?`, userCode))
	if err != nil {
		return meta.Grant{}, fmt.Errorf("meta/sqlite: grant by user code: %w", err)
	}
	return g, nil
}

func (r reader) FamilyRevoked(ctx context.Context, family string) (bool, error) {
	var n int
	err := r.q.QueryRowContext(ctx, `SELECT count(*) FROM revoked_families WHERE family = ?`, family).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("meta/sqlite: family revoked: %w", err)
	}
	return n > 0, nil
}

func (t *txn) AddClient(ctx context.Context, c meta.Client) error {
	if c.Created.IsZero() {
		c.Created = time.Now()
	}
	uris := c.RedirectURIs
	if uris == nil {
		uris = []string{}
	}
	b, _ := json.Marshal(uris)
	_, err := t.q.ExecContext(ctx, `INSERT INTO clients (`+clientColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
		c.ID, c.Name, c.Public, string(b), c.JWKS, nanos(c.Created))
	if err != nil {
		return fmt.Errorf("meta/sqlite: add client %q: %w", c.ID, mapErr(err))
	}
	return nil
}

// DeleteClient relies on ON DELETE CASCADE for the client's grants.
func (t *txn) DeleteClient(ctx context.Context, id string) error {
	if err := one(t.q.ExecContext(ctx, `DELETE FROM clients WHERE id = ?`, id)); err != nil {
		return fmt.Errorf("meta/sqlite: delete client %q: %w", id, err)
	}
	return nil
}

func nullUser(id int64) sql.NullInt64 { return sql.NullInt64{Int64: id, Valid: id != 0} }

func (t *txn) AddGrant(ctx context.Context, g meta.Grant) error {
	if err := checkTimes(g.Created, g.Expires); err != nil {
		return fmt.Errorf("meta/sqlite: add grant: %w", err)
	}
	if g.Created.IsZero() {
		g.Created = time.Now()
	}
	_, err := t.q.ExecContext(ctx, `INSERT INTO grants (hash, kind, family, client_id, user_id, scope, redirect_uri,
		challenge, jkt, user_code, created, expires, used, revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		g.Hash, string(g.Kind), g.Family, g.ClientID, nullUser(g.UserID), g.Scope, g.RedirectURI, g.Challenge, g.JKT,
		g.UserCode, nanos(g.Created), nanos(g.Expires), g.Used, g.Revoked)
	if err != nil {
		return fmt.Errorf("meta/sqlite: add grant: %w", mapErr(err))
	}
	return nil
}

func (t *txn) UpdateGrant(ctx context.Context, g meta.Grant) error {
	if err := checkTimes(g.Expires); err != nil {
		return fmt.Errorf("meta/sqlite: update grant: %w", err)
	}
	err := one(t.q.ExecContext(ctx, `UPDATE grants SET used = ?, revoked = ?, user_id = ?, jkt = ?, expires = ?
		WHERE hash = ?`, g.Used, g.Revoked, nullUser(g.UserID), g.JKT, nanos(g.Expires), g.Hash))
	if err != nil {
		return fmt.Errorf("meta/sqlite: update grant: %w", err)
	}
	return nil
}

func (t *txn) RevokeFamily(ctx context.Context, family string, until time.Time) error {
	if err := checkTimes(until); err != nil {
		return fmt.Errorf("meta/sqlite: revoke family: %w", err)
	}
	if _, err := t.q.ExecContext(ctx, `UPDATE grants SET revoked = 1 WHERE family = ?`, family); err != nil {
		return fmt.Errorf("meta/sqlite: revoke family: %w", mapErr(err))
	}
	_, err := t.q.ExecContext(ctx, `INSERT INTO revoked_families (family, until) VALUES (?, ?)
		ON CONFLICT (family) DO UPDATE SET until = max(until, excluded.until)`, family, nanos(until))
	if err != nil {
		return fmt.Errorf("meta/sqlite: revoke family: %w", mapErr(err))
	}
	return nil
}

// PruneGrants deletes grants that expired before the time and revoked
// families remembered until before it, and returns how many rows went.
func (s *Store) PruneGrants(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.Update(ctx, func(tx meta.Tx) error {
		q := tx.(*txn).q
		for _, stmt := range []string{`DELETE FROM grants WHERE expires < ?`, `DELETE FROM revoked_families WHERE until < ?`} {
			res, err := q.ExecContext(ctx, stmt, nanos(before))
			if err != nil {
				return err
			}
			k, _ := res.RowsAffected()
			n += k
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("meta/sqlite: prune grants: %w", err)
	}
	return int(n), nil
}
