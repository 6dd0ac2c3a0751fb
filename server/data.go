// Package server wires one Pullmail domain together: the data directory, the
// stores, the mailbox API, TLS, health, metrics and logs. cmd/pullmail's serve
// and admin commands are thin layers over it.
//
// The data directory holds (created on first use, mode 0700):
//
//	DIR/lock           held (flock) by the running server, with its pid; admin commands do not take it
//	DIR/meta.db        SQLite metadata (WAL files beside it), unless --meta names another store
//	DIR/resources/     the content-addressed resource store (resource/fsstore), unless --resources does
//	DIR/uploads/       resumable upload sessions (package upload)
//	DIR/ca.pem         the local CA certificate that clients trust (PULLMAIL_CA)
//	DIR/ca-key.pem     its private key (0600)
//	DIR/keys/          the at-rest encryption key, unless --key-file puts it elsewhere
//	DIR/acme/          certificates obtained with --acme
package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/meta"
)

// SettingDomain is the metadata setting that binds a data directory to its
// domain.
const SettingDomain = "domain"

// BindDomain records domain as the data directory's domain on first use and
// refuses a different one later: a data directory serves exactly one domain.
// An empty domain returns the recorded one (or an error if none is).
func BindDomain(ctx context.Context, st meta.Store, domain string) (string, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	var bound string
	err := st.Update(ctx, func(tx meta.Tx) error {
		cur, err := tx.Setting(ctx, SettingDomain)
		switch {
		case errors.Is(err, meta.ErrNotFound):
			if domain == "" {
				return errors.New("the data directory has no domain yet: pass --domain")
			}
			if _, err := account.NormalizeAddress("postmaster@" + domain); err != nil {
				return fmt.Errorf("%q is not a valid domain name", domain)
			}
			bound = domain
			return tx.SetSetting(ctx, SettingDomain, domain)
		case err != nil:
			return err
		case domain != "" && domain != cur:
			return fmt.Errorf("the data directory belongs to domain %s, not %s", cur, domain)
		}
		bound = cur
		return nil
	})
	return bound, err
}
