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
		name: "export", args: "--raw MESSAGE-ID [--out FILE]",
		short: "write a message as RFC 5322 bytes",
		long: `Writes one message of yours as an Internet message (RFC 5322, MIME), like get, through the
mailbox API: a message that came in by SMTP exactly as it arrived, any other composed as MIME
(docs/PROTOCOL.md §13.8-13.9). MESSAGE-ID is a Message-ID (<…@…>) or the message's id.

--out FILE writes it to FILE, which appears only complete (a temporary file, synced, then
renamed); without --out the bytes go to standard output.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			raw := fs.String("raw", "", "the `MESSAGE-ID` to write")
			out := fs.String("out", "", "write to `FILE` instead of standard output")
			return func(ctx context.Context, env *Env, args []string) error {
				if *raw == "" || len(args) != 0 {
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
