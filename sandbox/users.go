package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/atomicfile"
	"github.com/pullmail/pullmail/meta"
)

// User is a user of the sandbox: a bearer token made at this start, and a
// password kept across starts.
type User struct {
	Address  string
	Token    string
	Password string
}

// AddUser creates addr in st with password; it is an error if addr exists.
func AddUser(ctx context.Context, st meta.Store, addr, password string) error {
	hash, err := account.HashPassword(password)
	if err != nil {
		return err
	}
	return st.Update(ctx, func(tx meta.Tx) error {
		_, err := tx.AddUser(ctx, meta.User{Address: addr, PasswordHash: hash})
		return err
	})
}

// NewToken makes a bearer token for addr: ttl 0 never expires, a negative
// ttl makes one that has already expired.
func NewToken(ctx context.Context, st meta.Store, addr string, ttl time.Duration, label string) (string, error) {
	secret, hash := account.NewToken()
	now := time.Now().UTC()
	tok := meta.Token{Hash: hash, Label: label, Created: now}
	if ttl != 0 {
		tok.Expires = now.Add(ttl)
	}
	err := st.Update(ctx, func(tx meta.Tx) error {
		u, err := tx.UserByAddress(ctx, addr)
		if err != nil {
			return err
		}
		tok.UserID = u.ID
		return tx.AddToken(ctx, tok)
	})
	if err != nil {
		return "", fmt.Errorf("token for %s: %w", addr, err)
	}
	return secret, nil
}

// passwordFile is where a domain keeps a user's password, so that a
// restarted sandbox (pullmail dev on the same directory) keeps them; it is
// written once the user exists.
func passwordFile(dataDir, addr string) string { return filepath.Join(dataDir, "passwords", addr) }

// password returns addr's kept password and true, or a new random one and
// false.
func password(dataDir, addr string) (string, bool) {
	if b, err := os.ReadFile(passwordFile(dataDir, addr)); err == nil {
		return strings.TrimSpace(string(b)), true
	}
	var r [12]byte
	rand.Read(r[:])
	return base64.RawURLEncoding.EncodeToString(r[:]), false
}

func keepPassword(dataDir, addr, pw string) error {
	return atomicfile.Create(passwordFile(dataDir, addr), []byte(pw+"\n"), 0o600)
}

// addUsers creates the domain's users in st (those not there yet) and
// makes each a new token.
func (d *Domain) addUsers(ctx context.Context, st meta.Store) error {
	for _, addr := range d.addrs {
		pw, kept := password(d.Dir, addr)
		if _, err := st.UserByAddress(ctx, addr); errors.Is(err, meta.ErrNotFound) {
			if err := AddUser(ctx, st, addr, pw); err != nil {
				return fmt.Errorf("adding %s: %w", addr, err)
			}
			if !kept {
				if err := keepPassword(d.Dir, addr, pw); err != nil {
					return err
				}
			}
		} else if err != nil {
			return err
		}
		tok, err := NewToken(ctx, st, addr, 0, d.sb.cfg.TokenLabel)
		if err != nil {
			return err
		}
		d.setUser(User{Address: addr, Token: tok, Password: pw})
	}
	return nil
}

func (d *Domain) setUser(u User) {
	d.amu.Lock()
	defer d.amu.Unlock()
	d.accounts[u.Address] = u
}

// Buffer keeps what a server writes (its log), safe for the writer and
// any readers; past 8 MiB it keeps the newer half.
type Buffer struct {
	mu sync.Mutex
	b  []byte
}

const maxBuffer = 8 << 20

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.b)+len(p) > maxBuffer {
		b.b = append(b.b[:0], b.b[len(b.b)/2:]...)
	}
	b.b = append(b.b, p...)
	return len(p), nil
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}
