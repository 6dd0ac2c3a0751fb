// Command pullmail is the Pullmail mail system in one binary: the server of a
// domain, its admin commands and a command-line mail client. Run
// "pullmail help" for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pullmail/pullmail/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, cli.DefaultEnv(), os.Args[1:])
	stop()
	os.Exit(code)
}
