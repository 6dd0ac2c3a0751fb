package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/postgres"
	"github.com/pullmail/pullmail/meta/sqlite"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/fsstore"
	"github.com/pullmail/pullmail/resource/s3store"
)

// The backends of a domain are named by URL (the --meta and --resources
// flags of serve and of every admin command, and the config keys of the
// same names), so that a domain outgrows one machine by configuration, not
// by another build:
//
//	metadata   sqlite:PATH                          (default: sqlite:DIR/meta.db)
//	           postgres://USER@HOST/DB?…            (meta/postgres; a password in it is never printed: Redact)
//	resources  file:PATH                            (default: file:DIR/resources)
//	           s3://BUCKET/PREFIX?endpoint=URL&region=R  (resource/s3store; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
//
// This file is the one place that knows the schemes: server.Open and the
// admin commands open their stores through OpenBackends, and everything
// above holds meta.Store and resource.Store only.

// Schemes of the backend URLs.
const (
	SchemeSQLite   = "sqlite"
	SchemePostgres = "postgres"
	SchemeFile     = "file"
	SchemeS3       = "s3"
)

// BackendURL is a parsed backend URL: its scheme and, for the embedded
// backends (sqlite, file), the path it names.
type BackendURL struct {
	Scheme string
	Path   string // sqlite, file: the file or directory, cleaned
	Raw    string // as given (for postgres and s3, what their packages read)
}

// String is the URL without secrets (Redact): for logs, errors and doctor.
func (u BackendURL) String() string {
	if u.Path != "" {
		return u.Scheme + ":" + u.Path
	}
	return Redact(u.Raw)
}

// ParseMetaURL reads a --meta value; "" is the default, sqlite:DIR/meta.db.
// The errors name the value redacted, never its password.
func ParseMetaURL(dir, raw string) (BackendURL, error) {
	if raw == "" {
		if dir == "" {
			return BackendURL{}, errors.New("no data directory: pass --data DIR")
		}
		return BackendURL{Scheme: SchemeSQLite, Path: filepath.Join(dir, "meta.db")}, nil
	}
	u, err := parseBackendURL("--meta", raw, SchemeSQLite, SchemePostgres)
	if err != nil {
		return BackendURL{}, err
	}
	if u.Scheme == SchemePostgres {
		p, err := url.Parse(raw)
		if err != nil || p.Host == "" || strings.Trim(p.Path, "/") == "" || p.Fragment != "" {
			return BackendURL{}, fmt.Errorf("--meta %s: want postgres://USER@HOST/DB?…", Redact(raw))
		}
	}
	return u, nil
}

// ParseResourcesURL reads a --resources value; "" is the default,
// file:DIR/resources.
func ParseResourcesURL(dir, raw string) (BackendURL, error) {
	if raw == "" {
		if dir == "" {
			return BackendURL{}, errors.New("no data directory: pass --data DIR")
		}
		return BackendURL{Scheme: SchemeFile, Path: filepath.Join(dir, "resources")}, nil
	}
	u, err := parseBackendURL("--resources", raw, SchemeFile, SchemeS3)
	if err != nil {
		return BackendURL{}, err
	}
	if u.Scheme == SchemeS3 {
		if _, err := s3store.ParseURL(raw); err != nil {
			return BackendURL{}, fmt.Errorf("--resources: %w", err)
		}
	}
	return u, nil
}

// parseBackendURL splits raw into its scheme, one of the two allowed: the
// first a path scheme (SCHEME:PATH, or SCHEME:///PATH), the second a
// network one (SCHEME://…).
func parseBackendURL(flag, raw, pathScheme, netScheme string) (BackendURL, error) {
	want := fmt.Sprintf("want %s:PATH or %s://…", pathScheme, netScheme)
	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok || scheme == "" || strings.ContainsAny(scheme, "/\\.") {
		return BackendURL{}, fmt.Errorf("%s %q: not a URL (%s)", flag, Redact(raw), want)
	}
	switch strings.ToLower(scheme) {
	case pathScheme:
		p := rest
		if strings.HasPrefix(p, "//") {
			// The URL form: sqlite:///var/lib/x, with an empty host.
			if !strings.HasPrefix(p, "///") {
				return BackendURL{}, fmt.Errorf("%s %q: a host is not allowed (%s)", flag, raw, want)
			}
			p = p[2:]
		}
		if p == "" || strings.ContainsAny(p, "?#\x00") {
			return BackendURL{}, fmt.Errorf("%s %q: want %s:PATH, a path without ? or #", flag, raw, pathScheme)
		}
		return BackendURL{Scheme: pathScheme, Path: filepath.Clean(p), Raw: raw}, nil
	case netScheme:
		if !strings.HasPrefix(rest, "//") {
			return BackendURL{}, fmt.Errorf("%s %s: want %s://…", flag, Redact(raw), netScheme)
		}
		return BackendURL{Scheme: netScheme, Raw: raw}, nil
	}
	return BackendURL{}, fmt.Errorf("%s %s: unknown scheme %q (%s)", flag, Redact(raw), scheme, want)
}

// Redact returns a URL without its secrets: the password of its user
// information and a password= query parameter (PostgreSQL takes both). An
// unparsable value, or one without //, shows its scheme only, since where a
// password would be in it cannot be known.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" {
		scheme, _, _ := strings.Cut(raw, ":")
		return scheme + ":(rest hidden)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// BackendOptions say how OpenBackends opens the resource store.
type BackendOptions struct {
	// EncryptAtRest opens the resources encrypted (resource/sealed, over
	// whichever store) with the key in KeyFile, created if missing; false
	// opens them plain. A store stays encrypted or plain for life.
	EncryptAtRest bool
	// KeyFile is the at-rest key (default DIR/keys/resource.key).
	KeyFile string
	// Shared opens the stores beside a server that may be running on them
	// (the admin commands, fsck): the file store leaves its temporary
	// files alone, and whether the resources are encrypted is read from
	// the store itself (EncryptAtRest is ignored; the key, when needed,
	// must exist).
	Shared bool
	// OnDamage and Log: see fsstore.Options.
	OnDamage func(resource.ID)
	Log      *slog.Logger
	// Node names the server among the nodes sharing the stores
	// (Config.Node): a file store's temporary files go to tmp/NODE/
	// (fsstore.Options.Node). Empty for the admin commands.
	Node string
}

// Backends are a domain's two stores, opened by OpenBackends.
type Backends struct {
	Meta      meta.Store
	Resources resource.Store
	// MetaURL and ResourcesURL are what was opened, defaults filled in.
	MetaURL, ResourcesURL BackendURL
	// Encrypted says whether the resources are encrypted at rest.
	Encrypted bool
}

// Close closes both stores.
func (b *Backends) Close() error {
	err := b.Meta.Close()
	if c, ok := b.Resources.(io.Closer); ok {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Describe says which backends are in use, without secrets, for logs and
// pullmail doctor: "metadata sqlite:/d/meta.db, resources file:/d/resources
// (encrypted at rest)".
func (b *Backends) Describe() string {
	d := fmt.Sprintf("metadata %s, resources %s", b.MetaURL, b.ResourcesURL)
	if b.Encrypted {
		d += " (encrypted at rest)"
	}
	return d
}

// OpenBackends opens the metadata and resource stores of the data directory
// dir, named by metaURL and resURL ("" for the defaults in dir). It is the
// one opener of serve and of every admin command.
func OpenBackends(ctx context.Context, dir, metaURL, resURL string, opt BackendOptions) (*Backends, error) {
	mu, err := ParseMetaURL(dir, metaURL)
	if err != nil {
		return nil, err
	}
	ru, err := ParseResourcesURL(dir, resURL)
	if err != nil {
		return nil, err
	}
	st, err := openMeta(ctx, dir, mu)
	if err != nil {
		return nil, err
	}
	rs, enc, err := openResources(ctx, dir, ru, opt)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Backends{Meta: st, Resources: rs, MetaURL: mu, ResourcesURL: ru, Encrypted: enc}, nil
}

// OpenMeta opens (creating if needed) the metadata store named by metaURL
// ("" for DIR/meta.db), for commands that need no resources.
func OpenMeta(ctx context.Context, dir, metaURL string) (meta.Store, error) {
	mu, err := ParseMetaURL(dir, metaURL)
	if err != nil {
		return nil, err
	}
	return openMeta(ctx, dir, mu)
}

func openMeta(ctx context.Context, dir string, u BackendURL) (meta.Store, error) {
	if dir != "" {
		// The data directory holds the keys and the staging whatever the
		// backends.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating data directory: %w", err)
		}
	}
	switch u.Scheme {
	case SchemeSQLite:
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o700); err != nil {
			return nil, fmt.Errorf("metadata store %s: %w", u, err)
		}
		st, err := sqlite.Open(ctx, u.Path)
		if err != nil {
			return nil, fmt.Errorf("opening metadata store %s: %w", u, err)
		}
		return st, nil
	case SchemePostgres:
		st, err := postgres.Open(ctx, u.Raw)
		if err != nil {
			return nil, fmt.Errorf("opening metadata store %s: %w", u, err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("metadata store %s: unknown scheme", u)
}

// keyFile is the at-rest key's path.
func keyFile(dir string, opt BackendOptions) string {
	if opt.KeyFile != "" {
		return opt.KeyFile
	}
	return filepath.Join(dir, "keys", "resource.key")
}

// loadKey returns the at-rest key: created if missing when a server
// encrypts, required to exist when a tool opens an encrypted store.
func loadKey(dir string, opt BackendOptions) ([]byte, error) {
	kf := keyFile(dir, opt)
	if opt.Shared {
		k, err := fsstore.LoadKey(kf)
		if err != nil {
			return nil, fmt.Errorf("the resource store is encrypted: %w (pass --key-file)", err)
		}
		return k, nil
	}
	if err := os.MkdirAll(filepath.Dir(kf), 0o700); err != nil {
		return nil, fmt.Errorf("encryption key directory: %w", err)
	}
	k, err := fsstore.LoadOrCreateKey(kf)
	if err != nil {
		return nil, fmt.Errorf("encryption key: %w", err)
	}
	return k, nil
}

const lifeHint = "a store stays encrypted or plain for life: check --encrypt-at-rest and --key-file"

func openResources(ctx context.Context, dir string, u BackendURL, opt BackendOptions) (resource.Store, bool, error) {
	switch u.Scheme {
	case SchemeFile:
		fo := fsstore.Options{Shared: opt.Shared, OnDamage: opt.OnDamage, Log: opt.Log, Node: opt.Node}
		enc := opt.EncryptAtRest
		if opt.Shared {
			var err error
			enc, err = fsstore.Encrypted(u.Path)
			if errors.Is(err, fs.ErrNotExist) {
				enc, err = false, nil // nothing stored yet: New makes the store
			}
			if err != nil {
				return nil, false, err
			}
		}
		if enc {
			k, err := loadKey(dir, opt)
			if err != nil {
				return nil, false, err
			}
			fo.Key = k
		}
		st, err := fsstore.New(u.Path, fo)
		if err != nil {
			return nil, false, fmt.Errorf("opening resource store %s (%s): %w", u, lifeHint, err)
		}
		return st, enc, nil
	case SchemeS3:
		cfg, err := s3store.ParseURL(u.Raw)
		if err != nil {
			return nil, false, err
		}
		so := s3store.Options{OnDamage: opt.OnDamage, Log: opt.Log}
		b, err := s3store.NewBucket(ctx, cfg, so)
		if err != nil {
			return nil, false, fmt.Errorf("opening resource store %s: %w", u, err)
		}
		enc := opt.EncryptAtRest
		if opt.Shared {
			if enc, err = b.Encrypted(ctx); err != nil {
				return nil, false, fmt.Errorf("opening resource store %s: %w", u, err)
			}
		}
		if enc {
			if so.Key, err = loadKey(dir, opt); err != nil {
				return nil, false, err
			}
		}
		st, err := b.Store(ctx, so)
		if err != nil {
			return nil, false, fmt.Errorf("opening resource store %s (%s): %w", u, lifeHint, err)
		}
		return st, enc, nil
	}
	return nil, false, fmt.Errorf("resource store %s: unknown scheme", u)
}
