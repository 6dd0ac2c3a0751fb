// Package cli is the pullmail command line: a table of subcommands, each with
// its help beside its code. cmd/pullmail only calls Main.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/pullmail/pullmail/errs"
)

// Env is the world a command runs in; tests give it buffers.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	// IsTerminal reports whether a stream is an interactive terminal
	// (progress bars and password prompts need one).
	IsTerminal func(f any) bool
}

// command is one subcommand.
type command struct {
	name  string // may have a space: "user add"
	args  string // the synopsis after the name
	short string // one line for the command list
	long  string // the whole help, after the synopsis
	// flags declares the command's flags on fs and returns a function that
	// runs the command once they are parsed.
	flags func(fs *flag.FlagSet) func(ctx context.Context, env *Env, args []string) error
}

var commands []*command

func register(c *command) { commands = append(commands, c) }

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// Main runs the command line args (without the program name) and returns
// the exit status: 0 success, 1 failure, 2 usage error.
func Main(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c := find(args[1:]); c != nil {
				printHelp(env.Stdout, c)
				return 0
			}
		}
		printUsage(env.Stdout)
		return 0
	}
	c := find(args)
	if c == nil {
		fmt.Fprintf(env.Stderr, "pullmail: unknown command %q (see pullmail help)\n", strings.Join(args[:min(2, len(args))], " "))
		return 2
	}
	rest := args[len(strings.Fields(c.name)):]
	fs := flag.NewFlagSet("pullmail "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := c.flags(fs)
	if err := fs.Parse(interspersed(fs, rest)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(env.Stdout, c)
			return 0
		}
		fmt.Fprintf(env.Stderr, "pullmail %s: %v (see pullmail help %s)\n", c.name, err, c.name)
		return 2
	}
	err := run(ctx, env, fs.Args())
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(env.Stderr, "pullmail %s: %v (see pullmail help %s)\n", c.name, err, c.name)
		return 2
	}
	fmt.Fprintf(env.Stderr, "pullmail %s: %s\n", c.name, oneLine(err))
	return 1
}

// oneLine renders an error for a person: the message of an *errs.Error
// with its code, or the error text, on one line, made safe (an error may
// quote a message's filename or a server's words).
func oneLine(err error) string {
	var e *errs.Error
	msg := err.Error()
	if errors.As(err, &e) {
		msg = e.Message + " (" + e.Code + ")"
		if e.Kind == errs.Temporary && e.Err != nil {
			msg += ": " + e.Err.Error()
		}
	}
	return safe(strings.Join(strings.Fields(msg), " "))
}

// find returns the command named by the first one or two words of args.
func find(args []string) *command {
	for _, c := range commands {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c
		}
	}
	return nil
}

// interspersed moves flags after positional arguments to the front, so
// that "pullmail user add alice@a.test --data DIR" works as people type it.
func interspersed(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) > 1 && a[0] == '-' {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			if f := fs.Lookup(name); f != nil {
				if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
					continue
				}
				if i+1 < len(args) {
					flags = append(flags, args[i+1])
					i++
				}
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "pullmail: push-then-pull Internet mail (docs/PROTOCOL.md)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: pullmail COMMAND [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	cs := append([]*command(nil), commands...)
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.short)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Client commands read PULLMAIL_SERVER (base URL), PULLMAIL_TOKEN (bearer token)")
	fmt.Fprintln(w, "and PULLMAIL_CA (PEM file of an extra CA to trust).")
	fmt.Fprintln(w, "Run 'pullmail help COMMAND' for a command's flags.")
}

func printHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: pullmail %s %s\n\n%s\n", c.name, c.args, strings.TrimSpace(c.long))
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.flags(fs)
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

// listFlag collects a repeatable flag whose values may also be
// comma-separated: --to a@x --to b@x, or --to a@x,b@x.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range splitAddresses(v) {
		*l = append(*l, s)
	}
	return nil
}

// splitAddresses splits on commas outside quotes and angle brackets, so
// that `"Doe, Jane" <jane@a.test>` stays one address.
func splitAddresses(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			quoted = !quoted
		case c == '<' && !quoted:
			depth++
		case c == '>' && !quoted && depth > 0:
			depth--
		case c == ',' && !quoted && depth == 0:
			if s := strings.TrimSpace(v[start:i]); s != "" {
				out = append(out, s)
			}
			start = i + 1
		}
	}
	if s := strings.TrimSpace(v[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// pathFlag collects a repeatable flag of file paths (commas allowed in names).
type pathFlag []string

func (l *pathFlag) String() string     { return strings.Join(*l, " ") }
func (l *pathFlag) Set(v string) error { *l = append(*l, v); return nil }

// DefaultEnv is the process's own environment.
func DefaultEnv() *Env {
	return &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, IsTerminal: isTerminal}
}
