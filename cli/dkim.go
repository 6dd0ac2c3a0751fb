package cli

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pullmail/pullmail/mta"
	"github.com/pullmail/pullmail/server"
)

func init() {
	register(&command{
		name: "dkim", args: "--data DIR [--json]",
		short: "make the domain's DKIM keys and print the DNS records to publish",
		long: `Makes the DKIM keys of the domain in DIR/keys (an Ed25519 key, RFC 8463, and an RSA key of
2048 bits, for receivers that verify only rsa-sha256) if it has none yet, and prints the TXT
records to publish, one per selector (pullmail-ed25519, pullmail-rsa). Mail that the MTA
delivers to SMTP domains is signed with every key (docs/PROTOCOL.md §13.10); until the records
are published, receivers find the signatures unverifiable. Running it again prints the same
records. A running server loads the keys when it starts.

--json prints [{"selector", "name", "record"}].`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			asJSON := fs.Bool("json", false, "print the records as JSON")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 0 {
					return usagef("dkim takes no arguments")
				}
				st, err := data.openMeta(ctx)
				if err != nil {
					return err
				}
				domain, err := server.BindDomain(ctx, st, "")
				st.Close()
				if err != nil {
					return err
				}
				keys, err := mta.CreateDKIM(filepath.Join(*data.dir, "keys"))
				if err != nil {
					return err
				}
				type rec struct {
					Selector string `json:"selector"`
					Name     string `json:"name"`
					Record   string `json:"record"`
				}
				var out []rec
				for _, k := range keys {
					line, err := mta.DKIMRecord(domain, k)
					if err != nil {
						return err
					}
					out = append(out, rec{Selector: k.Selector, Name: k.Selector + "._domainkey." + domain, Record: line})
				}
				if *asJSON {
					return printJSON(env, out)
				}
				fmt.Fprintf(env.Stdout, "Publish these records in the zone of %s:\n\n", domain)
				for _, r := range out {
					fmt.Fprintln(env.Stdout, r.Record)
				}
				fmt.Fprintf(env.Stdout, "\nand, if %s has none yet, an SPF and a DMARC record, e.g.:\n\n", domain)
				fmt.Fprintf(env.Stdout, "%s. 3600 IN TXT \"v=spf1 mx -all\"\n_dmarc.%s. 3600 IN TXT \"v=DMARC1; p=quarantine\"\n",
					domain, strings.ToLower(domain))
				return nil
			}
		},
	})
}
