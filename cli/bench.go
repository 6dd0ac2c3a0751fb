package cli

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"github.com/pullmail/pullmail/atomicfile"
	"github.com/pullmail/pullmail/bench"
)

// benchSection is the heading of the section of docs/BENCHMARKS.md that
// 'pullmail bench --out' writes.
const benchSection = "## Benchmark suite (pullmail bench)"

func init() {
	// "bench serve" and "bench mbox" first: find matches commands in order.
	register(&command{
		name: "bench mbox", args: "--size N OUT",
		short: "write the mbox file of pullmail bench's import workload",
		long: `Writes an mbox file of about --size bytes to OUT (atomically): seven messages in ten are
text of 2-10 KiB, the others carry an attachment of 32 KiB to 1 MiB (base64 of random bytes:
nothing dedupes), each with its own Message-ID, the same bytes on every run. 'pullmail bench'
imports it (workload 9); it is here so that the benchmark times the import command alone.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			size := fs.Int64("size", 64<<20, "about how many `BYTES` to write")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("want OUT")
				}
				f, err := os.CreateTemp(filepath.Dir(args[0]), ".bench-mbox-*")
				if err != nil {
					return err
				}
				defer os.Remove(f.Name())
				bw := bufio.NewWriterSize(f, 1<<20)
				n, err := WriteBenchMbox(bw, *size, 1)
				if err == nil {
					err = bw.Flush()
				}
				if err == nil {
					err = f.Sync()
				}
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return fmt.Errorf("writing %s: %w", args[0], err)
				}
				if err := os.Rename(f.Name(), args[0]); err != nil {
					return err
				}
				fmt.Fprintln(env.Stdout, n)
				return nil
			}
		},
	})
	register(&command{
		name: "bench serve", args: "-- PROFILE-FILE [serve flags]",
		short: "serve with a CPU profile (used by pullmail bench --cpuprofile)",
		long: `Runs 'pullmail serve' with the flags after PROFILE-FILE and writes a CPU profile of the whole
run to PROFILE-FILE when it ends (SIGINT or SIGTERM). 'pullmail bench --cpuprofile DIR' starts
its servers this way; serve itself has no profiling flag.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) < 1 || strings.HasPrefix(args[0], "-") {
					return usagef("want -- PROFILE-FILE [serve flags]")
				}
				f, err := os.Create(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				code := Main(ctx, env, append([]string{"serve"}, args[1:]...))
				pprof.StopCPUProfile()
				if code != 0 {
					return fmt.Errorf("serve exited with status %d", code)
				}
				return nil
			}
		},
	})
	register(&command{
		name: "bench", args: "[--quick] [--peers maddy,mox|none] [--json] [--out FILE] [--cpuprofile DIR] [--meta URL --resources URL] [--baseline BINARY]",
		short: "benchmark Pullmail against maddy, mox and the machine's floors",
		long: `Runs the benchmark suite of docs/BENCHMARKS.md on loopback, in one run:

  1. one message with a 1 MiB, 50 MiB and 1 GiB attachment: time from send to delivered,
     bytes on the wire, peak RSS of each server, bytes on disk;
  2. the same 50 MiB attachment again in a new message: the extra wire and disk bytes;
  3. fan-out: a 100 MiB attachment to 100 recipients on 5 domains;
  4. 10,000 small messages, one sender and 16 at once: messages/s, p50/p99 latency;
  5. the floors: SHA-256 of each file, a plain loopback HTTPS copy, an fsync'd write;
  6. a 50 MiB attachment by SMTP into the recipient's MX, then again: time, disk;
  8. 1,000 small messages out to an SMTP domain (maddy), against a maddy relaying them;
  9. pullmail import of a 1 GiB mbox (pullmail bench mbox): MiB/s and peak RSS;

on Pullmail (this binary's 'serve', one process per domain, a DNS server of the run's own)
and on the SMTP servers maddy v0.8.2 and mox v0.0.15 as the recipients' MX. The peers are
built on first use from the Go module proxy (go mod download, go build; maddy needs gcc)
and cached in --cache. They run in a mount namespace of their own whose /etc/resolv.conf
names a loopback DNS server of the run (needs root): nothing leaves 127.0.0.0/8.

Tables go to stdout (markdown), progress to stderr. --quick runs small sizes (a minute).
With --meta and --resources the workloads run a second time on Pullmail domains whose
stores are that PostgreSQL server and S3 bucket (pullmail-pg), and workload 4 a third
time with two serve nodes per domain (pullmail-pg-2nodes), beside SQLite and files.
--baseline BINARY runs every workload a second time on that binary's serve (SQLite and
files, pullmail-baseline) and tables each against this binary's, "slower" beyond 10%.
The full mode needs about 20 GiB of free space in --tmp and takes tens of minutes.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			quick := fs.Bool("quick", false, "small sizes and few messages: proves the tool works")
			peers := fs.String("peers", "maddy,mox", "SMTP `PEERS` to compare with, comma-separated, or none")
			cache := fs.String("cache", bench.DefaultCacheDir(), "`DIR`ectory that keeps the peers' binaries")
			jsonOut := fs.Bool("json", false, "print the report as JSON instead of tables")
			out := fs.String("out", "", "write the markdown section to `FILE` (replacing its \""+strings.TrimPrefix(benchSection, "## ")+"\" section if it has one)")
			cpu := fs.String("cpuprofile", "", "make each Pullmail server write a CPU profile to `DIR`/DOMAIN.cpu.pprof")
			tmp := fs.String("tmp", "", "`DIR`ectory for the run's data (default: the system's temporary directory)")
			metaURL := fs.String("meta", "", "also run on PostgreSQL: a postgres://USER@HOST/DB `URL` whose role may create databases (one per domain, dropped at the end); with --resources")
			baseline := fs.String("baseline", "", "also run the workloads on the pullmail `BINARY` given (the previous commit's, say), SQLite and files, and compare")
			resURL := fs.String("resources", "", "also run on S3: an s3://BUCKET/PREFIX?endpoint=URL&region=R `URL` (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; one prefix per domain, emptied at the end); with --meta")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 0 {
					return usagef("unexpected arguments: %s", strings.Join(args, " "))
				}
				var names []string
				if *peers != "none" {
					names = splitList(*peers)
				}
				bin, err := os.Executable()
				if err != nil {
					return fmt.Errorf("finding this binary: %w", err)
				}
				rep, err := bench.Run(ctx, bench.Options{Binary: bin, Quick: *quick, Peers: names, CacheDir: *cache,
					CPUProfileDir: *cpu, TempDir: *tmp, Progress: env.Stderr, Meta: *metaURL, Resources: *resURL, Baseline: *baseline})
				if err != nil {
					return err
				}
				cmdline := "pullmail bench"
				if *quick {
					cmdline += " --quick"
				}
				if *peers != "maddy,mox" {
					cmdline += " --peers " + *peers
				}
				if *metaURL != "" {
					cmdline += " --meta postgres://… --resources s3://…"
				}
				if *baseline != "" {
					cmdline += " --baseline " + *baseline
				}
				var md bytes.Buffer
				rep.Markdown(&md, cmdline)
				if *jsonOut {
					b, err := rep.JSON()
					if err != nil {
						return err
					}
					fmt.Fprintf(env.Stdout, "%s\n", b)
				} else {
					env.Stdout.Write(md.Bytes())
				}
				if *out != "" {
					if err := writeBenchSection(*out, md.String()); err != nil {
						return err
					}
					fmt.Fprintf(env.Stderr, "wrote %s\n", *out)
				}
				return nil
			}
		},
	})
}

// writeBenchSection puts body under benchSection in the markdown file at
// path: in place of the section if the file has it, else before its first
// second-level heading, else at its end; a new file holds the section alone.
func writeBenchSection(path, body string) error {
	section := benchSection + "\n\n" + strings.Trim(body, "\n") + "\n"
	old, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return atomicfile.Replace(path, []byte(section), 0o644)
	} else if err != nil {
		return err
	}
	lines := strings.SplitAfter(string(old), "\n")
	start, end := -1, len(lines)
	for i, l := range lines {
		t := strings.TrimRight(l, "\n")
		if start < 0 && t == benchSection {
			start = i
			continue
		}
		if start >= 0 && strings.HasPrefix(t, "## ") {
			end = i
			break
		}
	}
	if start < 0 {
		end = len(lines)
		for i, l := range lines {
			if strings.HasPrefix(l, "## ") {
				end = i
				break
			}
		}
		start = end
	}
	var b strings.Builder
	for _, l := range lines[:start] {
		b.WriteString(l)
	}
	b.WriteString(section)
	if end < len(lines) {
		b.WriteString("\n")
	}
	for _, l := range lines[end:] {
		b.WriteString(l)
	}
	return atomicfile.Replace(path, []byte(b.String()), 0o644)
}
