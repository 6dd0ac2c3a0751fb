package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
)

// The folder commands (docs/PROTOCOL.md §8.18); move and delete are in
// mail.go beside list.
func init() {
	register(&command{
		name: "folder list", args: "[--json]",
		short: "list your folders with their counts",
		long: `Lists your folders: the system folders (inbox, drafts, sent, archive, requests, junk,
trash) and then your own, each with how many messages it holds and how many are unseen.
--json prints {"folders": [{"name", "total", "unseen", "system"}, ...]}.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 0 {
					return usagef("folder list takes no arguments")
				}
				api, err := newClient(ctx, env)
				if err != nil {
					return err
				}
				fl, err := api.Folders(ctx)
				if err != nil {
					return err
				}
				if *asJSON {
					return printJSON(env, fl)
				}
				tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "FOLDER\tTOTAL\tUNSEEN")
				for _, f := range fl.Folders {
					fmt.Fprintf(tw, "%s\t%d\t%d\n", safe(f.Name), f.Total, f.Unseen)
				}
				return tw.Flush()
			}
		},
	})
	register(&command{
		name: "folder add", args: "NAME",
		short: "add a folder of your own",
		long: `Adds a folder of your own, to move messages into ('pullmail move MESSAGE-ID NAME').
A name has 1 to 64 characters, no '/', no control character, no leading or trailing space,
and is not a system folder's name in any case.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one NAME")
				}
				api, err := newClient(ctx, env)
				if err != nil {
					return err
				}
				f, err := api.CreateFolder(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "added folder %s\n", safe(f.Name))
				return nil
			}
		},
	})
	register(&command{
		name: "folder del", args: "NAME",
		short: "remove an empty folder of your own",
		long:  `Removes a folder of your own. It must be empty: move or delete its messages first.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one NAME")
				}
				api, err := newClient(ctx, env)
				if err != nil {
					return err
				}
				if err := api.DeleteFolder(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "removed folder %s\n", safe(args[0]))
				return nil
			}
		},
	})
}

// restoreHelp is the mail client's half of pullmail restore's help (the
// other half, a backup restored into a data directory, is in migrate.go).
const restoreHelp = `Without --data: moves a message in trash back to the folder it was deleted from (a
deleted draft to drafts; a folder of yours removed since: inbox). MESSAGE-ID is the
Message-ID (angle brackets optional) or the message's id from 'list --json'. --json
prints the restored message.`

// restoreMessage is pullmail restore MESSAGE-ID: a message out of trash.
func restoreMessage(ctx context.Context, env *Env, args []string, asJSON bool) error {
	if len(args) != 1 {
		return usagef("want exactly one MESSAGE-ID")
	}
	api, err := newClient(ctx, env)
	if err != nil {
		return err
	}
	m, err := resolveIn(ctx, api, args[0], "trash")
	if err != nil {
		return err
	}
	m, err = api.Restore(ctx, m.ID)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(env, m)
	}
	fmt.Fprintf(env.Stdout, "restored %s to %s\n", safe(m.MessageID), safe(m.Folder))
	return nil
}
