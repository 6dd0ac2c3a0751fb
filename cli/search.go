package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/pullmail/pullmail/mailbox"
)

func init() {
	register(&command{
		name: "search", args: "QUERY... [--limit N] [--json]",
		short: "search your mail",
		long: `Searches your sent and received mail, newest first (docs/PROTOCOL.md §8.19). The
arguments are one query: words or "quoted phrases" found in From, To, Cc, Subject, the text
or an attachment's file name (a word also finds the words it begins), and

  from:TERM  to:TERM  subject:TERM     that field only (to: covers Cc)
  has:attachment                       only messages with an attachment
  after:YYYY-MM-DD  before:YYYY-MM-DD  dated on or after, or before, that day (UTC)
  in:FOLDER                            that folder only (default: all but trash and junk)

Every term must match. --json prints an array of message objects, as 'list --json' does.

  pullmail search from:alice 'subject:"tea party"' has:attachment`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			limit := fs.Int("limit", 0, "at most `N` messages (0: the server's default)")
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) == 0 {
					return usagef("want a QUERY")
				}
				api, err := newClient(ctx, env)
				if err != nil {
					return err
				}
				l, err := api.Search(ctx, mailbox.SearchOptions{Query: strings.Join(args, " "), Limit: *limit})
				if err != nil {
					return err
				}
				if *asJSON {
					return printJSON(env, l.Messages)
				}
				if len(l.Messages) == 0 {
					fmt.Fprintln(env.Stderr, "pullmail: no message matches")
					return nil
				}
				tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "DATE\tFOLDER\tFROM\tSUBJECT\tMESSAGE-ID")
				for _, m := range l.Messages {
					date := "-"
					if m.Date != nil {
						date = m.Date.Local().Format("2006-01-02 15:04")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", date, clip(safe(m.Folder), 16), clip(safe(m.From), 30), clip(safe(m.Subject), 40), safe(m.MessageID))
				}
				return tw.Flush()
			}
		},
	})
}
