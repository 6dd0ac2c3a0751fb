package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/server"
)

func init() {
	register(&command{
		name: "client add", args: "--data DIR CLIENT-ID (--public --redirect-uri URI... | --jwks FILE) [--name NAME]",
		short: "register an OAuth 2.0 client",
		long: `Registers an OAuth 2.0 client at the domain's authorization server. A public client (a
browser or native app) signs users in with Authorization Code + PKCE and must list its exact
redirect URIs. A confidential client (an MTA, a service) authenticates with private_key_jwt
(RFC 7523): --jwks names a file with its public keys as a JSON Web Key Set.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			public := fs.Bool("public", false, "a public client (PKCE, no credentials)")
			var uris pathFlag
			fs.Var(&uris, "redirect-uri", "an exact redirect `URI` (repeatable)")
			jwksFile := fs.String("jwks", "", "a confidential client's public keys (JWK Set `FILE`)")
			name := fs.String("name", "", "a name people see on the sign-in page")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one CLIENT-ID")
				}
				c := meta.Client{ID: args[0], Name: *name, Public: *public, RedirectURIs: uris}
				if c.Name == "" {
					c.Name = c.ID
				}
				if strings.TrimSpace(c.ID) != c.ID || c.ID == "" || len(c.ID) > 200 {
					return usagef("CLIENT-ID must be 1 to 200 characters without surrounding spaces")
				}
				for _, u := range uris {
					p, err := url.Parse(u)
					if err != nil || p.Scheme == "" || p.Host == "" || p.Fragment != "" {
						return usagef("--redirect-uri %q: want an absolute URI without a fragment", u)
					}
					if p.Scheme != "https" && p.Hostname() != "127.0.0.1" && p.Hostname() != "::1" && p.Hostname() != "localhost" {
						return usagef("--redirect-uri %q: use https (http only for loopback, RFC 8252)", u)
					}
				}
				switch {
				case *public && *jwksFile != "":
					return usagef("a public client has no keys: drop --jwks")
				case !*public && *jwksFile == "":
					return usagef("give --public, or --jwks FILE for a confidential client")
				case !*public:
					b, err := os.ReadFile(*jwksFile)
					if err != nil {
						return err
					}
					set, err := keys.ParseJWKS(b)
					if err != nil {
						return fmt.Errorf("%s: %w", *jwksFile, err)
					}
					if len(set.Keys) == 0 {
						return fmt.Errorf("%s: no usable key", *jwksFile)
					}
					c.JWKS = b
				}
				st, _, err := openAdmin(ctx, data, "")
				if err != nil {
					return err
				}
				defer st.Close()
				err = st.Update(ctx, func(tx meta.Tx) error { return tx.AddClient(ctx, c) })
				if errors.Is(err, meta.ErrExists) {
					return fmt.Errorf("client %s already exists", c.ID)
				} else if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "registered %s\n", c.ID)
				return nil
			}
		},
	})
	register(&command{
		name: "client list", args: "--data DIR [--json]",
		short: "list the registered OAuth 2.0 clients",
		long:  `Lists the clients registered at the domain's authorization server.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, env *Env, args []string) error {
				st, _, err := openAdmin(ctx, data, "")
				if err != nil {
					return err
				}
				defer st.Close()
				cs, err := st.Clients(ctx)
				if err != nil {
					return err
				}
				if *asJSON {
					type c struct {
						ID           string    `json:"client_id"`
						Name         string    `json:"name"`
						Public       bool      `json:"public"`
						RedirectURIs []string  `json:"redirect_uris"`
						Created      time.Time `json:"created"`
					}
					out := make([]c, 0, len(cs))
					for _, x := range cs {
						u := x.RedirectURIs
						if u == nil {
							u = []string{}
						}
						out = append(out, c{x.ID, x.Name, x.Public, u, x.Created})
					}
					return printJSON(env, out)
				}
				tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "CLIENT-ID\tTYPE\tREDIRECT-URIS")
				for _, x := range cs {
					kind := "confidential"
					if x.Public {
						kind = "public"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", x.ID, kind, strings.Join(x.RedirectURIs, " "))
				}
				return tw.Flush()
			}
		},
	})
	register(&command{
		name: "client del", args: "--data DIR CLIENT-ID",
		short: "remove an OAuth 2.0 client and everything issued to it",
		long:  `Removes a client; its codes and refresh tokens go with it.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one CLIENT-ID")
				}
				st, _, err := openAdmin(ctx, data, "")
				if err != nil {
					return err
				}
				defer st.Close()
				err = st.Update(ctx, func(tx meta.Tx) error { return tx.DeleteClient(ctx, args[0]) })
				if errors.Is(err, meta.ErrNotFound) {
					return fmt.Errorf("no client %s", args[0])
				} else if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "removed %s\n", args[0])
				return nil
			}
		},
	})
}

func init() {
	register(&command{
		name: "keys rotate", args: "--data DIR",
		short: "rotate the authorization server's signing key",
		long: `Makes a new signing key current. The old key keeps verifying what it signed until that
expires (up to 5 days), then leaves the JWKS. A running server picks the change up within a
second.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			return func(ctx context.Context, env *Env, args []string) error {
				if err := data.resolve(); err != nil {
					return err
				}
				set, err := server.OpenSigningKeys(*data.dir, nil)
				if err != nil {
					return err
				}
				if err := set.Rotate(); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "current signing key: %s\n", set.CurrentKID())
				return nil
			}
		},
	})
}
