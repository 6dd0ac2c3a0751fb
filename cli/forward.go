package cli

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/mail"
	"os"
	"path/filepath"
	"strings"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// ReplyOptions is what 'pullmail reply' sends.
type ReplyOptions struct {
	All    bool
	Text   string
	Attach []string
}

// Reply answers parent: to its sender (and, with All, to every other
// recipient but the user), "Re:" subject, In-Reply-To the parent (the
// server adds References and the thread, docs/PROTOCOL.md §6.2). Bodies and
// attachments the user already holds are referenced, not uploaded again.
func Reply(ctx context.Context, env *Env, api mailbox.API, parent mailbox.Message, o ReplyOptions) (mailbox.Message, error) {
	me, err := api.Me(ctx)
	if err != nil {
		return mailbox.Message{}, err
	}
	to, cc := replyRecipients(me.Address, parent, o.All)
	if len(to)+len(cc) == 0 {
		return mailbox.Message{}, errs.E(errs.Invalid, "no_recipients", "nobody to reply to: the message is from and to you alone")
	}
	subject := parent.Subject
	if !strings.HasPrefix(strings.ToLower(subject), "re:") {
		subject = strings.TrimSpace("Re: " + subject)
	}
	m := placeholder.New(me.Address, to, cc, nil, subject)
	m.Header.SetString(placeholder.HInReplyTo, parent.MessageID)
	text, err := reuseOrUpload(ctx, env, api, "the text", strings.NewReader(o.Text), int64(len(o.Text)), func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(o.Text)), nil
	})
	if err != nil {
		return mailbox.Message{}, err
	}
	leaf, err := placeholder.NewLeaf(text.ContentID, text.Size, "text/plain; charset=UTF-8", "inline", "")
	if err != nil {
		return mailbox.Message{}, err
	}
	m.Parts = append(m.Parts, leaf)
	return attachAndSend(ctx, env, api, m, o.Attach, reuseOrUploadFile)
}

// replyRecipients: a reply goes to the parent's sender (to its recipients
// when the parent is the user's own sent message); a reply-all adds every
// To and Cc recipient, without the user and without duplicates.
func replyRecipients(self string, parent mailbox.Message, all bool) (to, cc []string) {
	seen := map[string]bool{norm(self): true}
	add := func(dst *[]string, addrs ...string) {
		for _, a := range addrs {
			if n := norm(a); n != "" && !seen[n] {
				seen[n] = true
				*dst = append(*dst, a)
			}
		}
	}
	if norm(parent.From) == norm(self) {
		add(&to, parent.To...)
	} else {
		add(&to, parent.From)
	}
	if all {
		add(&to, parent.To...)
		add(&cc, parent.Cc...)
	}
	return to, cc
}

// norm is an address's account form, "" when it does not parse.
func norm(s string) string {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return ""
	}
	n, err := account.NormalizeAddress(a.Address)
	if err != nil {
		return ""
	}
	return n
}

// reuseOrUploadFile references a file the user already holds (same
// SHA-256), and uploads it otherwise.
func reuseOrUploadFile(ctx context.Context, env *Env, api mailbox.API, path string) (mailbox.Upload, error) {
	f, err := os.Open(path)
	if err != nil {
		return mailbox.Upload{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return mailbox.Upload{}, err
	}
	if !st.Mode().IsRegular() {
		return mailbox.Upload{}, fmt.Errorf("%s is not a regular file", path)
	}
	return reuseOrUpload(ctx, env, api, path, f, st.Size(), func() (io.ReadCloser, error) { return os.Open(path) })
}

// reuseOrUpload hashes what r holds; if the user holds a resource with
// that Content-ID and size, it is reused, otherwise reopen gives the bytes
// again for the upload.
func reuseOrUpload(ctx context.Context, env *Env, api mailbox.API, label string, r io.Reader, size int64, reopen func() (io.ReadCloser, error)) (mailbox.Upload, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return mailbox.Upload{}, fmt.Errorf("reading %s: %w", label, err)
	}
	id := resource.IDFromSum(h.Sum(nil))
	held, err := api.Stat(ctx, id)
	switch {
	case err == nil && held.Size == size:
		fmt.Fprintf(env.Stderr, "pullmail: %s is already in your mailbox: referenced, not uploaded\n", label)
		return held, nil
	case err != nil && !errs.Is(err, errs.NotFound):
		return mailbox.Upload{}, err
	}
	rc, err := reopen()
	if err != nil {
		return mailbox.Upload{}, err
	}
	defer rc.Close()
	pr, done := withProgress(env, rc, size, filepath.Base(label))
	up, err := api.Upload(ctx, pr, mailbox.UploadOptions{Size: size, Digest: id})
	done()
	if err != nil {
		return up, fmt.Errorf("uploading %s: %w", label, err)
	}
	return up, nil
}

func init() {
	register(&command{
		name: "forward", args: "MESSAGE-ID --to ADDR[,ADDR] [--text NOTE] [--json]",
		short: "forward a message",
		long: `Passes a message on and prints the new Message-ID on standard output. A message received
from another domain goes on with its chain of signed envelopes: nothing is uploaded or
downloaded, and the final recipient's domain pulls the attachments from the author's domain,
presenting the chain (docs/PROTOCOL.md §12); the printed id is the forward's
Forwarded-Message-ID. Any other message goes as a new message of yours ("Fwd:") referencing
the same attachments. --text adds a one-line note. Your domain may forbid forwarding
(pullmail user forwarding ADDRESS deny).`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			var to listFlag
			fs.Var(&to, "to", "recipient `ADDRESS`es")
			note := fs.String("text", "", "a one-line `NOTE` for the recipients")
			asJSON := fs.Bool("json", false, "print the forward as JSON")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one MESSAGE-ID")
				}
				if len(to) == 0 {
					return usagef("no recipients: give --to")
				}
				api, err := newClient(ctx, env)
				if err != nil {
					return err
				}
				m, err := resolve(ctx, api, args[0])
				if err != nil {
					return err
				}
				f, err := api.Forward(ctx, m.ID, mailbox.ForwardRequest{To: to, Note: *note})
				if err != nil {
					return err
				}
				if *asJSON {
					return printJSON(env, f)
				}
				fmt.Fprintln(env.Stdout, f.ForwardID)
				return nil
			}
		},
	})
	register(&command{
		name: "reply", args: "MESSAGE-ID [--all] --text T [--attach FILE]... [--json]",
		short: "reply to a message",
		long: `Replies to a message's sender (--all: and to its other recipients), in its thread, and prints
the new Message-ID. Attachments you already hold (same bytes: a file you received or sent)
are referenced, not uploaded again.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			var o ReplyOptions
			var attach pathFlag
			fs.BoolVar(&o.All, "all", false, "reply to every recipient too")
			fs.StringVar(&o.Text, "text", "", "the text body")
			fs.Var(&attach, "attach", "attach a `FILE` (repeatable)")
			asJSON := fs.Bool("json", false, "print the sent message as JSON")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one MESSAGE-ID")
				}
				o.Attach = attach
				api, err := newClient(ctx, env)
				if err != nil {
					return err
				}
				parent, err := resolve(ctx, api, args[0])
				if err != nil {
					return err
				}
				sent, err := Reply(ctx, env, api, parent, o)
				if err != nil {
					return err
				}
				if *asJSON {
					return printJSON(env, sent)
				}
				fmt.Fprintln(env.Stdout, sent.MessageID)
				return nil
			}
		},
	})
}

// ForwardingPolicy is a user's forwarding policy as 'pullmail user
// forwarding' shows it.
type ForwardingPolicy struct {
	Address    string `json:"address"`
	Forwarding string `json:"forwarding"` // manual forwards: allow (default) or deny
	Auto       string `json:"auto"`       // forwarding rules: allow or deny (default)
}

func readPolicy(ctx context.Context, r meta.Reader, u meta.User) (ForwardingPolicy, error) {
	p := ForwardingPolicy{Address: u.Address, Forwarding: "allow", Auto: "deny"}
	if on, err := federation.Forwarding.Get(ctx, r, u.ID); err != nil {
		return p, err
	} else if !on {
		p.Forwarding = "deny"
	}
	if on, err := federation.AutoForwarding.Get(ctx, r, u.ID); err != nil {
		return p, err
	} else if on {
		p.Auto = "allow"
	}
	return p, nil
}

func init() {
	register(&command{
		name: "user forwarding", args: "--data DIR ADDRESS [allow|deny] [--auto allow|deny] [--json]",
		short: "show or set a user's forwarding policy",
		long: `Shows a user's forwarding policy, or sets it. With deny, the user's forwards are refused by
the mailbox (403 forwarding_denied) and by the domain's authorization server, which then
issues no chained assertion for them (docs/PROTOCOL.md §10.7, §12.2). The default is allow.
--auto sets the separate policy of automatic forwarding (rules that forward every message
the user receives, pullmail autoforward; §12.6). Its default is deny: the user can set no
rule, the mailbox skips the rules of a user denied later, and the authorization server
refuses hops made by a rule. Automatic forwarding also needs forwarding allowed.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			auto := fs.String("auto", "", "automatic forwarding `POLICY`: allow or deny")
			asJSON := fs.Bool("json", false, "print the policy as JSON")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 && len(args) != 2 {
					return usagef("want ADDRESS and optionally allow or deny")
				}
				set := map[string]string{}
				if len(args) == 2 {
					if args[1] != "allow" && args[1] != "deny" {
						return usagef("the policy is allow or deny, not %q", args[1])
					}
					set[mailbox.SettingForwarding] = args[1]
				}
				if *auto != "" {
					if *auto != "allow" && *auto != "deny" {
						return usagef("--auto is allow or deny, not %q", *auto)
					}
					set[mailbox.SettingAutoForwarding] = *auto
				}
				st, addr, err := openAdmin(ctx, data, args[0])
				if err != nil {
					return err
				}
				defer st.Close()
				var pol ForwardingPolicy
				err = st.Update(ctx, func(tx meta.Tx) error {
					u, err := tx.UserByAddress(ctx, addr)
					if err != nil {
						return err
					}
					for _, name := range []string{mailbox.SettingForwarding, mailbox.SettingAutoForwarding} {
						if v, ok := set[name]; ok {
							if err := tx.SetUserSetting(ctx, u.ID, name, v); err != nil {
								return err
							}
						}
					}
					pol, err = readPolicy(ctx, tx, u)
					return err
				})
				if isNotFound(err) {
					return fmt.Errorf("no user %s", addr)
				} else if err != nil {
					return err
				}
				switch {
				case *asJSON:
					return printJSON(env, pol)
				case len(set) == 0:
					fmt.Fprintf(env.Stdout, "forwarding %s\nautomatic forwarding %s\n", pol.Forwarding, pol.Auto)
				default:
					if _, ok := set[mailbox.SettingForwarding]; ok {
						fmt.Fprintf(env.Stdout, "forwarding %s for %s\n", pol.Forwarding, addr)
					}
					if _, ok := set[mailbox.SettingAutoForwarding]; ok {
						fmt.Fprintf(env.Stdout, "automatic forwarding %s for %s\n", pol.Auto, addr)
					}
				}
				return nil
			}
		},
	})
}

func isNotFound(err error) bool { return errors.Is(err, meta.ErrNotFound) }
