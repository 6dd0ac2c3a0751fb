package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/pullmail/pullmail/mailbox"
)

func init() {
	register(&command{
		name: "autoforward", args: "[--to ADDR[,ADDR]] [--off] [--json]",
		short: "show, set or clear your automatic forwarding rule",
		long: `Without options, shows your automatic forwarding rule. --to sets it: every message you
receive from then on is forwarded to those addresses, and you keep your copy. A message from
another domain goes on with its chain of signed envelopes (nothing is downloaded for the
forward: the final domain pulls from the author's); one of your domain goes as a new message
of yours. --off clears the rule. Your domain must allow it: the default is deny (403
forwarding_denied; the admin runs pullmail user forwarding ADDRESS --auto allow). Messages
that have already passed a target, or you, are not forwarded again (docs/PROTOCOL.md §12.6).`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			var to listFlag
			fs.Var(&to, "to", "forward to `ADDRESS`es")
			off := fs.Bool("off", false, "clear the rule")
			asJSON := fs.Bool("json", false, "print the rule as JSON")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 0 {
					return usagef("autoforward takes no arguments")
				}
				if *off && len(to) > 0 {
					return usagef("give --to or --off, not both")
				}
				api, err := newClient(ctx, env)
				if err != nil {
					return err
				}
				var af mailbox.AutoForward
				switch {
				case *off:
					af, err = api.SetAutoForward(ctx, mailbox.AutoForwardRequest{})
				case len(to) > 0:
					af, err = api.SetAutoForward(ctx, mailbox.AutoForwardRequest{To: to})
				default:
					af, err = api.AutoForward(ctx)
				}
				if err != nil {
					return err
				}
				if *asJSON {
					return printJSON(env, af)
				}
				allowed := "allowed"
				if !af.Allowed {
					allowed = "not allowed by your domain"
				}
				if !af.Enabled {
					fmt.Fprintf(env.Stdout, "automatic forwarding off (%s)\n", allowed)
					return nil
				}
				fmt.Fprintf(env.Stdout, "automatic forwarding to %s (%s)\n", safeStrings(af.To), allowed)
				return nil
			}
		},
	})
}
