package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/pullmail/pullmail/mta"
	"github.com/pullmail/pullmail/server"
)

// newLogger makes the process logger from --log-level and --log-format.
func newLogger(env *Env, level, format string) (*slog.Logger, error) {
	lv, err := parseLogLevel(level)
	if err != nil {
		return nil, usagef("--log-level: %v", err)
	}
	opt := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(env.Stderr, opt)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(env.Stderr, opt)), nil
	}
	return nil, usagef("--log-format: %v", errLogFormat)
}

// parseLogLevel reads a --log-level; a config file's log-level is checked
// by it too, so the file and the flag refuse the same values.
func parseLogLevel(s string) (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(s)); err != nil {
		return 0, errors.New("want debug, info, warn or error")
	}
	return lv, nil
}

var errLogFormat = errors.New("want text or json")

func init() {
	register(&command{
		name: "serve", args: "--data DIR --domain DOMAIN [--listen ADDR] [flags]",
		short: "run a domain's mailbox server",
		long: `Runs the mailbox server of one domain over HTTPS until interrupted (SIGINT or SIGTERM end
it gracefully). TLS comes from --tls-cert/--tls-key, or --acme, or by default from a local CA
created in DIR (DIR/ca.pem: give it to clients as PULLMAIL_CA).

Endpoints: /api/v1/... (the mailbox API, docs/PROTOCOL.md §8), /openapi.json, /healthz
(liveness), /readyz (readiness: the stores can write, the disk has room), /metrics (Prometheus).
--smtp ADDR also runs the domain's mail exchanger: SMTP from other mail systems for this
domain's users (STARTTLS with the same certificate; never a relay; docs/PROTOCOL.md §13.7).
--submission ADDR (587, STARTTLS) and --submissions ADDR (465, implicit TLS) take mail from
mail clients: SASL PLAIN with the user's password or OAUTHBEARER with a token; each message
becomes a Pullmail send to any mix of Pullmail and SMTP recipients (§13.11).
--imap ADDR (993, implicit TLS) and --imap-starttls ADDR (143, STARTTLS) let mail clients read
the mailbox over IMAP4rev2, with the same PLAIN and OAUTHBEARER (docs/PROTOCOL.md, "IMAP").
A running server locks DIR (DIR/lock): a second serve on it refuses; admin commands work beside it.

The stores are named by URL: --meta sqlite:PATH (default DIR/meta.db) or
postgres://USER@HOST/DB?…, and --resources file:PATH (default DIR/resources) or
s3://BUCKET/PREFIX?endpoint=URL&region=R, with the credentials in AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY. DIR keeps the keys, the lock and the staging whatever the stores; every
admin command takes the same --meta and --resources (or --config FILE).

--config FILE reads every other flag from FILE, one "key = value" a line (pullmail config
example prints them all with their defaults; pullmail config check FILE checks a file); flags
given on the command line override the file.`,
		flags: serveFlags,
	})
}

// serveFlags declares serve's flags. It is also the schema of serve's
// config file: every flag but --config is a key of the same name, so a
// flag added here is a key at once (TestServeFlagsAreKeys keeps the
// example honest).
func serveFlags(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
	var cfg server.Config
	var hosts listFlag
	fs.StringVar(&cfg.DataDir, "data", "", "data `DIR`ectory (created if missing)")
	fs.StringVar(&cfg.MetaURL, "meta", "", metaFlagHelp)
	fs.StringVar(&cfg.ResourcesURL, "resources", "", resourcesFlagHelp)
	fs.StringVar(&cfg.Domain, "domain", "", "the mail domain served (required on first start)")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8443", "`ADDR`ess to listen on")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "the server's external base `URL` (default: https://DOMAIN on port 443, else https://LISTEN-ADDRESS)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate chain `FILE` (PEM)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key `FILE` (PEM)")
	fs.BoolVar(&cfg.ACME, "acme", false, "obtain certificates with ACME (needs public port 443)")
	fs.StringVar(&cfg.ACMEEmail, "acme-email", "", "contact address for the ACME account")
	fs.Var(&hosts, "host", "extra host `NAME` for the certificate (repeatable)")
	fs.BoolVar(&cfg.EncryptAtRest, "encrypt-at-rest", false, "encrypt stored resources (AES-256-GCM)")
	fs.StringVar(&cfg.KeyFile, "key-file", "", "at-rest key `FILE` (default DIR/keys/resource.key; keep it apart from the data)")
	fs.Int64Var(&cfg.MaxUpload, "max-upload", 0, "largest resource accepted, in bytes (0: no limit)")
	fs.StringVar(&cfg.DNS, "dns", "", "DNS server `ADDR` (host:port) for other domains' SRV records (default: the system's)")
	fs.StringVar(&cfg.PeerCA, "peer-ca", "", "PEM `FILE` of extra CAs to trust for other domains' TLS")
	fs.DurationVar(&cfg.RetryHorizon, "retry-horizon", 5*24*time.Hour, "how long to keep retrying a delivery before telling the sender it failed")
	fs.BoolVar(&cfg.AllowPrivatePeers, "allow-private-peers", false, "allow other domains on loopback and private addresses (tests only)")
	fs.BoolVar(&cfg.MetricsPublic, "metrics-public", false, "serve /metrics to every peer (default: loopback peers only)")
	fs.DurationVar(&cfg.BodyTimeout, "body-timeout", server.DefaultBodyTimeout, "longest a request body outside /api/ may take to arrive (slow senders are cut with 408)")
	fs.DurationVar(&cfg.BodyIdleTimeout, "body-idle-timeout", server.DefaultBodyIdleTimeout, "longest a request body under /api/ (uploads) may pause between bytes")
	fs.Int64Var(&cfg.MaxBody, "max-body", server.DefaultMaxBody, "largest request body outside /api/, in bytes (413 above it)")
	fs.StringVar(&cfg.SMTP, "smtp", "", "`ADDR`ess for the mail exchanger (SMTP from other mail systems, port 25; default: none)")
	fs.Int64Var(&cfg.SMTPMaxSize, "smtp-max-size", 1<<30, "largest message accepted by SMTP, in bytes")
	fs.StringVar(&cfg.Submission, "submission", "", "`ADDR`ess for mail clients' submission with STARTTLS (port 587; default: none)")
	fs.StringVar(&cfg.Submissions, "submissions", "", "`ADDR`ess for mail clients' submission with implicit TLS (port 465; default: none)")
	fs.StringVar(&cfg.IMAP, "imap", "", "`ADDR`ess for mail clients' IMAP with implicit TLS (port 993; default: none)")
	fs.StringVar(&cfg.IMAPStartTLS, "imap-starttls", "", "`ADDR`ess for mail clients' IMAP with STARTTLS (port 143; default: none)")
	fs.DurationVar(&cfg.JobLease, "job-lease", mta.DefaultLease, "`DURATION` of a node's claim on a delivery or pull, renewed while it runs: how soon the other nodes of the domain take over a dead node's work")
	fs.IntVar(&cfg.SMTPOutPort, "smtp-out-port", 25, "`PORT` dialled on other domains' mail exchangers (25; another for tests and the sandbox)")
	fs.Uint64Var(&cfg.ReadyMinFree, "ready-min-free", server.DefaultReadyMinFree, "free bytes on the data directory's file system below which /readyz answers 503")
	fs.StringVar(&cfg.Node, "node", "", "this server's `NAME` among the nodes of its domain sharing its stores, unique and the same across restarts (default: the host name)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	file := fs.String("config", "", "read the other flags from `FILE` (see pullmail config example); flags given override it")
	return func(ctx context.Context, env *Env, args []string) error {
		if len(args) != 0 {
			return usagef("unexpected arguments: %s", strings.Join(args, " "))
		}
		if *file != "" {
			if err := loadServeConfig(fs, *file); err != nil {
				return err
			}
		}
		if cfg.DataDir == "" {
			return usagef("--data DIR is required")
		}
		if _, err := server.ParseMetaURL(cfg.DataDir, cfg.MetaURL); err != nil {
			return usagef("%v", err)
		}
		if _, err := server.ParseResourcesURL(cfg.DataDir, cfg.ResourcesURL); err != nil {
			return usagef("%v", err)
		}
		if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
			return usagef("--tls-cert and --tls-key go together")
		}
		log, err := newLogger(env, *level, *format)
		if err != nil {
			return err
		}
		cfg.Hosts, cfg.Log = hosts, log
		// Listen first: with port 0 the address, and so the
		// default public URL, is known only then.
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
		}
		cfg.Listen = ln.Addr().String()
		srv, err := server.Open(ctx, cfg)
		if err != nil {
			ln.Close()
			return err
		}
		defer srv.Close()
		return srv.ServeListener(ctx, ln, func(url string) {
			fmt.Fprintf(env.Stdout, "pullmail serving %s at %s\n", srv.Domain, url)
			if a := srv.SMTPAddr(); a != "" {
				fmt.Fprintf(env.Stdout, "pullmail smtp for %s at %s\n", srv.Domain, a)
			}
			if a, b := srv.SubmissionAddrs(); a != "" || b != "" {
				fmt.Fprintf(env.Stdout, "pullmail submission for %s at %s (STARTTLS) %s (TLS)\n", srv.Domain, a, b)
			}
			if a, b := srv.IMAPAddrs(); a != "" || b != "" {
				fmt.Fprintf(env.Stdout, "pullmail imap for %s at %s (TLS) %s (STARTTLS)\n", srv.Domain, a, b)
			}
		})
	}
}
