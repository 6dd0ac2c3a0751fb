package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func init() {
	register(&command{
		name: "export", args: "--raw MESSAGE-ID [--out FILE] | --data DIR ADDRESS --format mbox|maildir [--json] OUT",
		short: "write a message, or a user's every message, as RFC 5322 bytes",
		long: `With --raw, writes one message of yours as an Internet message (RFC 5322, MIME), like get,
through the mailbox API: a message that came in by SMTP exactly as it arrived, any other
composed as MIME (docs/PROTOCOL.md §13.8-13.9). MESSAGE-ID is a Message-ID (<…@…>) or the
message's id. --out FILE writes it to FILE, which appears only complete (a temporary file,
synced, then renamed); without --out the bytes go to standard output.

With --data (an admin command, on the data directory), writes every message of ADDRESS,
of every folder, oldest first, to OUT: an mbox file (--format mbox, mboxrd quoting) or a new
Maildir (--format maildir; OUT must not exist; flags S for read, T for trash, D for drafts).
Each message is its RFC 5322 bytes as GET /api/v1/messages/{id}/raw gives them: mail that
came in by SMTP or by import byte for byte as it came (so import reads an export back
exactly), any other composed as MIME. OUT appears only complete: the export is written beside it, synced, and renamed
into place, so an interrupted export leaves OUT as it was. A message whose resources are
still being fetched (or whose fetch failed) is left out, and the summary says so.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			raw := fs.String("raw", "", "the `MESSAGE-ID` to write")
			out := fs.String("out", "", "write to `FILE` instead of standard output")
			data := addDataFlags(fs)
			format := fs.String("format", "", "with --data: mbox or maildir")
			asJSON := fs.Bool("json", false, "with --data: print the summary as JSON")
			fs.String("key-file", "", "the at-rest encryption key of an encrypted store (default DIR/keys/resource.key)")
			return func(ctx context.Context, env *Env, args []string) error {
				if *raw == "" {
					if *out != "" {
						return usagef("--out goes with --raw; the admin form writes to OUT")
					}
					if len(args) != 2 || (*format != "mbox" && *format != "maildir") {
						return usagef("export takes --raw MESSAGE-ID, or --data DIR --format mbox|maildir ADDRESS OUT")
					}
					return exportMailbox(ctx, env, data, *format, args[0], args[1], *asJSON)
				}
				if len(args) != 0 || *format != "" || *data.dir != "" || *asJSON {
					return usagef("export takes --raw MESSAGE-ID (and no other arguments)")
				}
				api, err := newClient(ctx, env)
				if err != nil {
					return err
				}
				m, err := resolve(ctx, api, *raw)
				if err != nil {
					return err
				}
				rc, err := api.Raw(ctx, m.ID)
				if err != nil {
					return err
				}
				defer rc.Close()
				if *out == "" {
					if _, err := io.Copy(env.Stdout, rc); err != nil {
						return fmt.Errorf("writing %s: %w", safe(*raw), err)
					}
					return nil
				}
				return writeComplete(*out, rc)
			}
		},
	})
}

// writeComplete copies r into path through a temporary file beside it, so
// that path holds either all of r or what it held before.
func writeComplete(path string, r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pullmail-*.part")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	_, err = io.Copy(tmp, r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}
