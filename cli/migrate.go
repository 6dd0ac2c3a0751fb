package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/pullmail/pullmail/atomicfile"
	"github.com/pullmail/pullmail/backup"
	"github.com/pullmail/pullmail/server"
)

// pullmail migrate, backup and restore: package backup does the copying;
// these commands choose the stores, guard them and report.

// checkpointFile, in the data directory, records a migrate or restore under
// way or done: which target it writes. A target that already holds users
// is refused unless this file names it (a run of ours started it: the next
// run resumes it).
const checkpointFile = "migrate.json"

type checkpoint struct {
	From        string          `json:"from"`
	ToMeta      string          `json:"to_meta"`
	ToResources string          `json:"to_resources"`
	Started     time.Time       `json:"started"`
	Done        bool            `json:"done"`
	Summary     *backup.Summary `json:"summary,omitempty"`
}

// The stable codes of the JSON error that migrate, backup and restore
// print on standard output with --json (besides the message on standard
// error and exit status 1), for scripts.
const (
	codeDamaged    = "backup_damaged"   // restore: the backup is partial or damaged; nothing was written
	codeNotEmpty   = "target_not_empty" // the target holds another domain; nothing was written
	codeVerify     = "verify_failed"    // the copy differs from the source
	codeInterrupt  = "interrupted"      // cancelled (a signal): run the same command again to resume
	codeSameStores = "same_stores"      // the target is the source
	codeFailed     = "failed"           // anything else (the message says what)
)

// copyError is a failure of a copy command with its stable code.
type copyError struct {
	code string
	err  error
}

func (e *copyError) Error() string { return e.err.Error() }
func (e *copyError) Unwrap() error { return e.err }

// classify gives err its code.
func classify(err error) *copyError {
	var ce *copyError
	if errors.As(err, &ce) {
		return ce
	}
	code := codeFailed
	switch {
	case errors.Is(err, backup.ErrDamaged):
		code = codeDamaged
	case errors.Is(err, backup.ErrVerify):
		code = codeVerify
	case errors.Is(err, context.Canceled):
		code = codeInterrupt
	}
	return &copyError{code: code, err: err}
}

// finish prints the summary, or with --json the error object too, and
// returns err for Main to print and exit 1.
func finish(env *Env, err error, asJSON bool) error {
	if err == nil || !asJSON {
		return err
	}
	ce := classify(err)
	printJSON(env, map[string]any{"error": map[string]string{"code": ce.code, "message": oneLine(err)}})
	return err
}

func init() {
	register(&command{
		name: "migrate", args: "--data DIR --to-meta URL --to-resources URL [--meta URL] [--resources URL] [--json]",
		short: "move a domain to other stores (e.g. SQLite and files to PostgreSQL and S3), verified",
		long: `Copies everything of the domain in DIR, from its current stores (--meta and
--resources, or serve's --config, as for every admin command) to the stores named
by --to-meta (sqlite:PATH or postgres://…) and --to-resources (file:PATH or
s3://BUCKET/PREFIX?endpoint=URL&region=R), any direction, then verifies the copy:
every user, setting, per-user setting, token, OAuth client, grant, message (every
field, its placeholder, references and envelope), upload and job is compared, and
every referenced resource is read back from the target and hashed. The source is
not changed. Resources are streamed four at a time, in constant memory; a progress
bar shows on a terminal.

The domain's server must be stopped: migrate holds DIR's lock for its whole run,
so no server starts meanwhile. An interrupted migrate (Ctrl-C, a crash, a lost
connection) is resumed by running the same command again: what the target holds
already is left as it is, and nothing is copied twice (DIR/migrate.json records
which target the run writes; a target that holds users and that no run of ours
started is refused). Clients' sync cursors start afresh on the target: their
next sync lists again. The search index is rebuilt by the server.

Afterwards, start serve with the new --meta and --resources. The at-rest
encryption of the resources (and DIR/keys/resource.key) stays as it was.
With --json the summary (or {"error":{"code","message"}}) is printed as JSON.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			toMeta := fs.String("to-meta", "", "the target metadata store `URL`: sqlite:PATH or postgres://USER@HOST/DB?…")
			toRes := fs.String("to-resources", "", "the target resource store `URL`: file:PATH or s3://BUCKET/PREFIX?endpoint=URL&region=R")
			asJSON := fs.Bool("json", false, "print the summary (or the error) as JSON")
			fs.String("key-file", "", "the at-rest encryption key of an encrypted store (default DIR/keys/resource.key)")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 0 {
					return usagef("unexpected arguments: %s", strings.Join(args, " "))
				}
				if *toMeta == "" || *toRes == "" {
					return usagef("--to-meta URL and --to-resources URL are required")
				}
				if err := data.resolve(); err != nil {
					return err
				}
				sum, err := migrate(ctx, env, data, nil, *toMeta, *toRes, false)
				if err != nil {
					return finish(env, err, *asJSON)
				}
				return report(env, sum, *asJSON, "migrated to metadata %s, resources %s; start serve with --meta and --resources naming them",
					server.Redact(*toMeta), server.Redact(*toRes))
			}
		},
	})
	register(&command{
		name: "backup", args: "--data DIR [--meta URL] [--resources URL] [--verify-bytes] [--json] OUTDIR",
		short: "back a running domain up to a directory, incrementally",
		long: `Writes a consistent snapshot of the domain's metadata, and every resource it
references, into OUTDIR, whatever the domain's stores are (SQLite and files, or
PostgreSQL and S3). The server may be running: the metadata is read in one read
transaction while it goes on writing. OUTDIR holds manifest.json (the snapshot's
file and SHA-256, every resource with its size), meta-TIME.db (the snapshot, a
SQLite database) and resources/ (the resources, plain: keep OUTDIR as safe as
the keys). The copy is compared with the snapshot (every resource by its size;
--verify-bytes reads each back and hashes it) before the manifest names it, so an
interrupted backup leaves the previous one whole. Incremental: a resource OUTDIR
holds already is not copied again; resources no longer referenced stay (remove
OUTDIR to start over). DIR's keys (signing keys, TLS, the at-rest key) are not in
a backup: copy DIR/keys/ beside it. Restore it with pullmail restore. The format
is described in docs/BACKUP.md.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			bytes := fs.Bool("verify-bytes", false, "read every resource back from OUTDIR and hash it")
			asJSON := fs.Bool("json", false, "print the summary (or the error) as JSON")
			fs.String("key-file", "", "the at-rest encryption key of an encrypted store (default DIR/keys/resource.key)")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("backup takes one OUTDIR")
				}
				sum, err := backupTo(ctx, env, data, args[0], *bytes)
				if err != nil {
					return finish(env, err, *asJSON)
				}
				return report(env, sum, *asJSON, "backed up to %s", args[0])
			}
		},
	})
	register(&command{
		name: "restore", args: "MESSAGE-ID [--json] | --data DIR [--meta URL] [--resources URL] [--encrypt-at-rest] [--json] BACKUPDIR",
		short: "move a message out of trash; with --data, restore a domain from a pullmail backup",
		long: restoreHelp + `

With --data (or --config): restores a domain from a backup made by pullmail backup.
Checks the backup in BACKUPDIR whole (the manifest, the snapshot's SHA-256, every
resource read and hashed) and refuses a damaged or partial one, naming the fault,
before anything is written. Then copies it into the stores of DIR (--meta and
--resources, defaults in DIR, or serve's --config: SQLite and files, or PostgreSQL
and S3) and verifies it as migrate does, every resource read back and hashed. The
stores must hold no users, unless an interrupted restore into them is being resumed
(run the same command again; DIR/migrate.json); the server of DIR must be stopped
(restore holds DIR's lock). With --encrypt-at-rest the resources are stored
encrypted under DIR/keys/resource.key (or --key-file), created if missing. Copy the
domain's keys into DIR/keys/ as well. With --json the summary (or
{"error":{"code","message"}}) is printed as JSON.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			enc := fs.Bool("encrypt-at-rest", false, "with --data: store the restored resources encrypted at rest")
			asJSON := fs.Bool("json", false, "print the result (or the error) as JSON")
			fs.String("key-file", "", "with --data: the at-rest encryption key (default DIR/keys/resource.key)")
			return func(ctx context.Context, env *Env, args []string) error {
				if *data.dir == "" && *data.file == "" {
					return restoreMessage(ctx, env, args, *asJSON)
				}
				if len(args) != 1 {
					return usagef("restore --data DIR takes one BACKUPDIR")
				}
				if err := data.resolve(); err != nil {
					return err
				}
				sum, err := restoreFrom(ctx, env, data, args[0], *enc)
				if err != nil {
					return finish(env, err, *asJSON)
				}
				return report(env, sum, *asJSON, "restored %s into %s", args[0], *data.dir)
			}
		},
	})
}

// report prints a copy's summary.
func report(env *Env, sum backup.Summary, asJSON bool, format string, args ...any) error {
	if asJSON {
		return printJSON(env, sum)
	}
	fmt.Fprintf(env.Stdout, "%d users, %d messages (%d copied), %d resources of %d bytes (%d copied, %d bytes), %d jobs; verified: %v; %.1fs\n",
		sum.Users, sum.Messages, sum.MessagesCopied, sum.Resources, sum.Bytes, sum.ResourcesCopied, sum.BytesCopied, sum.Jobs, sum.Verified, sum.Seconds)
	fmt.Fprintf(env.Stdout, format+"\n", args...)
	return nil
}

// progress draws a bar on stderr for each phase of a copy, when stderr is a
// terminal (as withProgress does for transfers).
func progress(env *Env) (func(backup.Phase, int64, int64), func()) {
	if !env.IsTerminal(env.Stderr) {
		return nil, func() {}
	}
	var bar *progressbar.ProgressBar
	var phase backup.Phase
	finish := func() {
		if bar != nil {
			bar.Finish()
		}
	}
	return func(p backup.Phase, done, total int64) {
		if p != phase || bar == nil {
			finish()
			phase = p
			opts := []progressbar.Option{
				progressbar.OptionSetWriter(env.Stderr),
				progressbar.OptionSetDescription(string(p)),
				progressbar.OptionThrottle(100 * time.Millisecond),
				progressbar.OptionClearOnFinish(),
				progressbar.OptionShowCount(),
			}
			if p != backup.PhaseMessages && p != backup.PhaseAccounts {
				opts = append(opts, progressbar.OptionShowBytes(true), progressbar.OptionShowTotalBytes(true))
			}
			bar = progressbar.NewOptions64(total, opts...)
		}
		bar.Set64(done)
	}, finish
}

// migrate copies the stores of the data directory (or of the backup src,
// when set) into toMeta and toRes, holding DIR's lock, refusing a target
// that holds users unless a run of ours into it is being resumed.
func migrate(ctx context.Context, env *Env, data *dataFlags, src *backup.Opened, toMeta, toRes string, encrypt bool) (backup.Summary, error) {
	dir := *data.dir
	mu, err := server.ParseMetaURL(dir, toMeta)
	if err != nil {
		return backup.Summary{}, usagef("%v", err)
	}
	ru, err := server.ParseResourcesURL(dir, toRes)
	if err != nil {
		return backup.Summary{}, usagef("%v", err)
	}
	lock, err := server.LockDataDir(dir)
	if err != nil {
		return backup.Summary{}, err
	}
	defer lock.Close()
	var keyFile string
	if f := data.fs.Lookup("key-file"); f != nil {
		keyFile = f.Value.String()
	}
	cp := checkpoint{ToMeta: mu.String(), ToResources: ru.String(), Started: time.Now().UTC()}
	var from backup.Stores
	if src == nil {
		b, err := server.OpenBackends(ctx, dir, *data.meta, *data.resources, server.BackendOptions{Shared: true, KeyFile: keyFile})
		if err != nil {
			return backup.Summary{}, fmt.Errorf("opening the source: %w", err)
		}
		defer b.Close()
		if mu.String() == b.MetaURL.String() || ru.String() == b.ResourcesURL.String() {
			return backup.Summary{}, &copyError{codeSameStores, fmt.Errorf("the target stores must not be the source's (%s)", b.Describe())}
		}
		encrypt, cp.From = b.Encrypted, b.Describe()
		from = backup.Stores{Meta: b.Meta, Resources: b.Resources}
	} else {
		cp.From = "backup " + src.Manifest.Meta.File
		from = src.Stores
	}
	dst, err := server.OpenBackends(ctx, dir, toMeta, toRes, server.BackendOptions{EncryptAtRest: encrypt, KeyFile: keyFile})
	if err != nil {
		return backup.Summary{}, fmt.Errorf("opening the target: %w", err)
	}
	defer dst.Close()

	cpPath := filepath.Join(dir, checkpointFile)
	var prev checkpoint
	b, err := os.ReadFile(cpPath)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &prev); err != nil {
			return backup.Summary{}, fmt.Errorf("%s: %w", cpPath, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return backup.Summary{}, err
	}
	ours := prev.ToMeta == cp.ToMeta && prev.ToResources == cp.ToResources && prev.From == cp.From
	users, err := dst.Meta.Users(ctx)
	if err != nil {
		return backup.Summary{}, fmt.Errorf("reading the target: %w", err)
	}
	if len(users) > 0 && !ours {
		return backup.Summary{}, &copyError{codeNotEmpty, fmt.Errorf("the target metadata store %s holds %d users and no copy of ours from %s started it (%s): refusing to mix two domains",
			mu, len(users), cp.From, cpPath)}
	}
	if ours {
		cp.Started = prev.Started
	}
	if err := writeCheckpoint(cpPath, cp); err != nil {
		return backup.Summary{}, err
	}
	prog, done := progress(env)
	sum, err := backup.Copy(ctx, from, backup.Stores{Meta: dst.Meta, Resources: dst.Resources},
		backup.Options{Progress: prog, Verify: true, VerifyBytes: true})
	done()
	if err != nil {
		return sum, fmt.Errorf("copying to %s (run the same command again to resume): %w", dst.Describe(), err)
	}
	cp.Done, cp.Summary = true, &sum
	return sum, writeCheckpoint(cpPath, cp)
}

func writeCheckpoint(path string, cp checkpoint) error {
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Replace(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// restoreFrom checks and opens the backup, and only then the target.
func restoreFrom(ctx context.Context, env *Env, data *dataFlags, from string, encrypt bool) (backup.Summary, error) {
	prog, done := progress(env)
	src, err := backup.Open(ctx, from, backup.RestoreOptions{Options: backup.Options{Progress: prog}})
	done()
	if err != nil {
		return backup.Summary{}, fmt.Errorf("restoring %s: %w", from, err)
	}
	defer src.Close()
	return migrate(ctx, env, data, src, *data.meta, *data.resources, encrypt)
}

// backupTo backs the domain up into out, holding out's lock.
func backupTo(ctx context.Context, env *Env, data *dataFlags, out string, verifyBytes bool) (backup.Summary, error) {
	src, err := data.open(ctx)
	if err != nil {
		return backup.Summary{}, err
	}
	defer src.Close()
	lock, err := server.LockDataDir(out)
	if err != nil {
		return backup.Summary{}, fmt.Errorf("backup directory %s: %w", out, err)
	}
	defer lock.Close()
	prog, done := progress(env)
	m, err := backup.Backup(ctx, backup.Stores{Meta: src.Meta, Resources: src.Resources}, out,
		backup.BackupOptions{Options: backup.Options{Progress: prog, VerifyBytes: verifyBytes}, Source: src.Describe()})
	done()
	if err != nil {
		return m.Summary, fmt.Errorf("backing up to %s: %w", out, err)
	}
	return m.Summary, nil
}
