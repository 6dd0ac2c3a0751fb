package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/pullmail/pullmail/atomicfile"
	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/server"
)

// credentials is the file 'pullmail login' keeps (mode 0600) in the user's
// config directory: per server URL, the refresh token and the last access
// token.
type credentials struct {
	Servers map[string]credential `json:"servers"`
}

type credential struct {
	Address      string    `json:"address"`
	RefreshToken string    `json:"refresh_token"`
	AccessToken  string    `json:"access_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry,omitempty"`
}

// credMu serialises reads and writes of the credentials file within one
// process (the token source saves from whatever goroutine refreshes).
var credMu sync.Mutex

// credPath is PULLMAIL_CONFIG/credentials.json, or the user's config
// directory's pullmail/credentials.json.
func credPath(env *Env) (string, error) {
	dir := env.Getenv("PULLMAIL_CONFIG")
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return "", fmt.Errorf("no config directory (set PULLMAIL_CONFIG): %w", err)
		}
		dir = filepath.Join(base, "pullmail")
	}
	return filepath.Join(dir, "credentials.json"), nil
}

func loadCredentials(env *Env) (credentials, string, error) {
	path, err := credPath(env)
	if err != nil {
		return credentials{}, "", err
	}
	c := credentials{Servers: map[string]credential{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, path, nil
	} else if err != nil {
		return c, path, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, path, fmt.Errorf("%s: %w", path, err)
	}
	if c.Servers == nil {
		c.Servers = map[string]credential{}
	}
	return c, path, nil
}

func saveCredentials(path string, c credentials) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	return atomicfile.Replace(path, append(b, '\n'), 0o600)
}

// oauthSetup returns the server's OAuth configuration for the CLI's public
// client, from its RFC 8414 metadata, and a context whose HTTP client
// trusts PULLMAIL_CA.
func oauthSetup(ctx context.Context, env *Env, base string) (*oauth2.Config, string, context.Context, error) {
	base = strings.TrimRight(base, "/")
	c, err := client.New(base, "", env.Getenv("PULLMAIL_CA"))
	if err != nil {
		return nil, "", nil, err
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.HTTP)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/.well-known/oauth-authorization-server", nil)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, "", nil, fmt.Errorf("reaching %s: %w", base, err)
	}
	defer resp.Body.Close()
	var md struct {
		Issuer              string `json:"issuer"`
		AuthorizationURL    string `json:"authorization_endpoint"`
		TokenURL            string `json:"token_endpoint"`
		DeviceURL           string `json:"device_authorization_endpoint"`
		RevocationURL       string `json:"revocation_endpoint"`
		GrantTypesSupported []string
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", nil, fmt.Errorf("%s has no OAuth metadata (HTTP %d)", base, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&md); err != nil {
		return nil, "", nil, fmt.Errorf("reading %s's OAuth metadata: %w", base, err)
	}
	if md.Issuer != base { // RFC 8414 §3.3
		return nil, "", nil, fmt.Errorf("%s's metadata names issuer %q: refusing", base, md.Issuer)
	}
	return &oauth2.Config{
		ClientID: server.CLIClientID,
		Endpoint: oauth2.Endpoint{AuthURL: md.AuthorizationURL, TokenURL: md.TokenURL, DeviceAuthURL: md.DeviceURL,
			AuthStyle: oauth2.AuthStyleInParams},
		Scopes: []string{"mail"},
	}, md.RevocationURL, ctx, nil
}

// savingSource saves every new token (refresh tokens rotate: the old one
// is spent the moment a new one is issued) to the credentials file.
type savingSource struct {
	src  oauth2.TokenSource
	env  *Env
	base string
	mu   sync.Mutex
	last string
}

func (s *savingSource) Token() (*oauth2.Token, error) {
	t, err := s.src.Token()
	if err != nil {
		return nil, fmt.Errorf("your sign-in has ended (%v): run 'pullmail login'", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.RefreshToken != "" && t.RefreshToken != s.last {
		s.last = t.RefreshToken
		credMu.Lock()
		defer credMu.Unlock()
		c, path, err := loadCredentials(s.env)
		if err == nil {
			cr := c.Servers[s.base]
			cr.RefreshToken, cr.AccessToken, cr.TokenType, cr.Expiry = t.RefreshToken, t.AccessToken, t.TokenType, t.Expiry
			c.Servers[s.base] = cr
			err = saveCredentials(path, c)
		}
		if err != nil {
			return nil, fmt.Errorf("saving the rotated refresh token: %w", err)
		}
	}
	return t, nil
}

// loginClient is the API client for a server signed in with 'pullmail
// login': an OAuth 2.0 transport that refreshes and saves tokens.
func loginClient(ctx context.Context, env *Env, base string) (*client.Client, error) {
	base = strings.TrimRight(base, "/")
	credMu.Lock()
	c, _, err := loadCredentials(env)
	credMu.Unlock()
	if err != nil {
		return nil, err
	}
	cr, ok := c.Servers[base]
	if !ok || cr.RefreshToken == "" {
		return nil, errors.New("PULLMAIL_TOKEN is not set and you have not signed in to " + base + ": run 'pullmail login' (or get a token with 'pullmail token create')")
	}
	cfg, _, octx, err := oauthSetup(context.WithoutCancel(ctx), env, base)
	if err != nil {
		return nil, err
	}
	tok := &oauth2.Token{AccessToken: cr.AccessToken, TokenType: cr.TokenType, RefreshToken: cr.RefreshToken, Expiry: cr.Expiry}
	src := &savingSource{src: cfg.TokenSource(octx, tok), env: env, base: base, last: cr.RefreshToken}
	api, err := client.New(base, "", env.Getenv("PULLMAIL_CA"))
	if err != nil {
		return nil, err
	}
	api.HTTP = oauth2.NewClient(octx, oauth2.ReuseTokenSource(nil, src))
	return api, nil
}

func init() {
	register(&command{
		name: "login", args: "",
		short: "sign in to PULLMAIL_SERVER (device authorization)",
		long: `Signs in to the server named by PULLMAIL_SERVER with the OAuth 2.0 Device Authorization
Grant (RFC 8628): it prints a web address and a code; open the address in any browser, enter
the code and your password. The refresh token is kept in the user's config directory
(credentials.json, mode 0600; PULLMAIL_CONFIG moves it), and the client commands use it when
PULLMAIL_TOKEN is not set.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 0 {
					return usagef("no arguments expected")
				}
				base := strings.TrimRight(env.Getenv("PULLMAIL_SERVER"), "/")
				if base == "" {
					return errors.New("PULLMAIL_SERVER is not set: export PULLMAIL_SERVER=https://host:port")
				}
				cfg, _, octx, err := oauthSetup(ctx, env, base)
				if err != nil {
					return err
				}
				da, err := cfg.DeviceAuth(octx)
				if err != nil {
					return fmt.Errorf("starting the sign-in: %w", err)
				}
				fmt.Fprintf(env.Stderr, "To sign in, open %s\nand enter the code %s\n(or open %s)\nWaiting…\n",
					da.VerificationURI, da.UserCode, da.VerificationURIComplete)
				tok, err := cfg.DeviceAccessToken(octx, da)
				if err != nil {
					return fmt.Errorf("signing in: %w", err)
				}
				api, err := client.New(base, "", env.Getenv("PULLMAIL_CA"))
				if err != nil {
					return err
				}
				api.HTTP = cfg.Client(octx, tok)
				me, err := api.Me(ctx)
				if err != nil {
					return err
				}
				credMu.Lock()
				defer credMu.Unlock()
				c, path, err := loadCredentials(env)
				if err != nil {
					return err
				}
				c.Servers[base] = credential{Address: me.Address, RefreshToken: tok.RefreshToken, AccessToken: tok.AccessToken,
					TokenType: tok.TokenType, Expiry: tok.Expiry}
				if err := saveCredentials(path, c); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "signed in as %s\n", me.Address)
				return nil
			}
		},
	})
	register(&command{
		name: "logout", args: "",
		short: "sign out of PULLMAIL_SERVER, revoking the stored tokens",
		long: `Revokes the refresh token 'pullmail login' stored for PULLMAIL_SERVER (RFC 7009; the
access tokens it issued stop working too) and forgets it.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			return func(ctx context.Context, env *Env, args []string) error {
				base := strings.TrimRight(env.Getenv("PULLMAIL_SERVER"), "/")
				if base == "" {
					return errors.New("PULLMAIL_SERVER is not set")
				}
				credMu.Lock()
				defer credMu.Unlock()
				c, path, err := loadCredentials(env)
				if err != nil {
					return err
				}
				cr, ok := c.Servers[base]
				if !ok {
					return fmt.Errorf("not signed in to %s", base)
				}
				_, revURL, octx, err := oauthSetup(ctx, env, base)
				if err != nil {
					return err
				}
				hc := octx.Value(oauth2.HTTPClient).(*http.Client)
				form := url.Values{"token": {cr.RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {server.CLIClientID}}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, revURL, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := hc.Do(req)
				if err != nil {
					return fmt.Errorf("revoking: %w", err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("revoking: the server answered HTTP %d", resp.StatusCode)
				}
				delete(c.Servers, base)
				if err := saveCredentials(path, c); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "signed out of %s (%s)\n", base, cr.Address)
				return nil
			}
		},
	})
}
