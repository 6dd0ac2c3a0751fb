package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/server"
)

func isTerminal(f any) bool {
	if fd, ok := f.(interface{ Fd() uintptr }); ok {
		return term.IsTerminal(int(fd.Fd()))
	}
	return false
}

// openAdmin opens a data directory for an admin command and checks that
// address belongs to its domain (binding the domain on first use).
func openAdmin(ctx context.Context, data *dataFlags, address string) (meta.Store, string, error) {
	st, err := data.openMeta(ctx)
	if err != nil {
		return nil, "", err
	}
	if address == "" {
		return st, "", nil
	}
	addr, err := account.NormalizeAddress(address)
	if err != nil {
		st.Close()
		return nil, "", fmt.Errorf("%q: %w", address, err)
	}
	_, domain, _ := strings.Cut(addr, "@")
	if _, err := server.BindDomain(ctx, st, domain); err != nil {
		st.Close()
		return nil, "", err
	}
	return st, addr, nil
}

// readPassword takes --password, or reads one line from stdin (prompting
// without echo when stdin is a terminal).
func readPassword(env *Env, flagValue string) (string, error) {
	pw := flagValue
	if pw == "" {
		if f, ok := env.Stdin.(*os.File); ok && env.IsTerminal(f) {
			fmt.Fprint(env.Stderr, "Password: ")
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(env.Stderr)
			if err != nil {
				return "", fmt.Errorf("reading password: %w", err)
			}
			pw = string(b)
		} else {
			line, err := bufio.NewReader(env.Stdin).ReadString('\n')
			if err != nil && line == "" {
				return "", usagef("no password: give --password or one line on stdin")
			}
			pw = strings.TrimRight(line, "\r\n")
		}
	}
	if err := account.ValidatePassword(pw); err != nil {
		return "", err
	}
	return pw, nil
}

func init() {
	register(&command{
		name: "user add", args: "--data DIR ADDRESS [--password P]",
		short: "create a user of the data directory's domain",
		long: `Creates a user. The password comes from --password or from the first line of standard
input (typed without echo on a terminal); it is stored as an argon2id hash. The first user
of a fresh data directory fixes its domain.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			pass := fs.String("password", "", "the password (else read from stdin)")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one ADDRESS")
				}
				st, addr, err := openAdmin(ctx, data, args[0])
				if err != nil {
					return err
				}
				defer st.Close()
				pw, err := readPassword(env, *pass)
				if err != nil {
					return err
				}
				hash, err := account.HashPassword(pw)
				if err != nil {
					return err
				}
				err = st.Update(ctx, func(tx meta.Tx) error {
					_, err := tx.AddUser(ctx, meta.User{Address: addr, PasswordHash: hash})
					return err
				})
				if errors.Is(err, meta.ErrExists) {
					return fmt.Errorf("user %s already exists", addr)
				} else if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "created %s\n", addr)
				return nil
			}
		},
	})
	register(&command{
		name: "user list", args: "--data DIR [--json]",
		short: "list the users",
		long:  `Lists the users of a data directory, one address a line (or a JSON array with --json).`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 0 {
					return usagef("no arguments expected")
				}
				st, _, err := openAdmin(ctx, data, "")
				if err != nil {
					return err
				}
				defer st.Close()
				users, err := st.Users(ctx)
				if err != nil {
					return err
				}
				if *asJSON {
					type u struct {
						Address string    `json:"address"`
						Created time.Time `json:"created"`
					}
					out := make([]u, 0, len(users))
					for _, x := range users {
						out = append(out, u{x.Address, x.Created})
					}
					return printJSON(env, out)
				}
				tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				for _, x := range users {
					fmt.Fprintf(tw, "%s\t%s\n", x.Address, x.Created.Format(time.RFC3339))
				}
				return tw.Flush()
			}
		},
	})
	register(&command{
		name: "user passwd", args: "--data DIR ADDRESS [--password P]",
		short: "set a user's password",
		long:  `Sets a user's password, from --password or the first line of standard input.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			pass := fs.String("password", "", "the new password (else read from stdin)")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one ADDRESS")
				}
				st, addr, err := openAdmin(ctx, data, args[0])
				if err != nil {
					return err
				}
				defer st.Close()
				u, err := st.UserByAddress(ctx, addr)
				if errors.Is(err, meta.ErrNotFound) {
					return fmt.Errorf("no user %s", addr)
				} else if err != nil {
					return err
				}
				pw, err := readPassword(env, *pass)
				if err != nil {
					return err
				}
				hash, err := account.HashPassword(pw)
				if err != nil {
					return err
				}
				if err := st.Update(ctx, func(tx meta.Tx) error { return tx.SetPassword(ctx, u.ID, hash) }); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "password changed for %s\n", addr)
				return nil
			}
		},
	})
	register(&command{
		name: "user del", args: "--data DIR ADDRESS",
		short: "delete a user with their mail and tokens",
		long: `Deletes a user with everything of theirs: messages, uploads, tokens, sign-ins (refresh
tokens; their access tokens stop working at once) and settings (forwarding policies and rule).
A user added again at the same address is a new account: it starts from the defaults and no
token of the old one opens it. Resources that no one else references are removed by the
server's next garbage collection.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one ADDRESS")
				}
				st, addr, err := openAdmin(ctx, data, args[0])
				if err != nil {
					return err
				}
				defer st.Close()
				err = st.Update(ctx, func(tx meta.Tx) error {
					u, err := tx.UserByAddress(ctx, addr)
					if err != nil {
						return err
					}
					return tx.DeleteUser(ctx, u.ID)
				})
				if errors.Is(err, meta.ErrNotFound) {
					return fmt.Errorf("no user %s", addr)
				} else if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "deleted %s\n", addr)
				return nil
			}
		},
	})
	register(&command{
		name: "token create", args: "--data DIR ADDRESS [--ttl DURATION] [--label TEXT]",
		short: "print a new bearer token for a user (for scripts)",
		long: `Creates a bearer token for the user and prints it on standard output. Only its SHA-256 is
stored. Use it as PULLMAIL_TOKEN, or as "Authorization: Bearer TOKEN". --ttl 0 makes a token
that never expires.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			ttl := fs.Duration("ttl", 90*24*time.Hour, "lifetime of the token (0: no expiry)")
			label := fs.String("label", "", "a note to remember the token by")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one ADDRESS")
				}
				if *ttl < 0 {
					return usagef("--ttl must not be negative")
				}
				st, addr, err := openAdmin(ctx, data, args[0])
				if err != nil {
					return err
				}
				defer st.Close()
				secret, err := CreateToken(ctx, st, addr, *ttl, *label)
				if err != nil {
					return err
				}
				fmt.Fprintln(env.Stdout, secret)
				return nil
			}
		},
	})
}

// CreateToken makes a bearer token for the user with that (normalised)
// address and returns its secret.
func CreateToken(ctx context.Context, st meta.Store, addr string, ttl time.Duration, label string) (string, error) {
	secret, hash := account.NewToken()
	now := time.Now().UTC()
	t := meta.Token{Hash: hash, Label: label, Created: now}
	if ttl > 0 {
		t.Expires = now.Add(ttl)
	}
	err := st.Update(ctx, func(tx meta.Tx) error {
		u, err := tx.UserByAddress(ctx, addr)
		if err != nil {
			return err
		}
		t.UserID = u.ID
		return tx.AddToken(ctx, t)
	})
	if errors.Is(err, meta.ErrNotFound) {
		return "", fmt.Errorf("no user %s", addr)
	}
	return secret, err
}
