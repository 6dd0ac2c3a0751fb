package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pullmail/pullmail/server"
)

// Domain is one domain of a sandbox. Its ports stay the same across
// restarts (Stop or Kill, then Start), so that what the other domains
// discovered stays true.
type Domain struct {
	Name string
	Dir  string // the data directory
	// URL is the domain's public base URL (its issuer), which DNS leads
	// to: with CountWire, the proxy's.
	URL string
	// Direct is the server's own port, where the domain's users connect
	// (URL without CountWire).
	Direct string
	// Server is the running server (InProcess).
	Server *server.Server
	// SMTP is the mail exchanger's address (host:port) with Config.SMTP,
	// else "".
	SMTP string

	sb    *Sandbox
	port  int
	ln    net.Listener // the listener of the first start (InProcess)
	proxy *Proxy
	addrs []string // the users of Config.Users
	log   Buffer

	amu      sync.Mutex
	accounts map[string]User

	mu      sync.Mutex
	running bool
	started bool // once: users are added at the first start
	// InProcess:
	cancel context.CancelFunc
	served chan error
	// Process:
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
	exit *error        // how it ended, once done is closed
	// nodes are the domain's other nodes (Config.Nodes).
	nodes []*Node
}

// User returns one of the domain's users.
func (d *Domain) User(addr string) (User, bool) {
	d.amu.Lock()
	defer d.amu.Unlock()
	u, ok := d.accounts[addr]
	return u, ok
}

// Log is what the server logged (at Config.LogLevel; a process's standard
// error), over every start, unless Config.Log took an in-process log.
func (d *Domain) Log() string { return d.log.String() }

// WireBytes is what passed through the domain's public port (CountWire).
func (d *Domain) WireBytes() int64 {
	if d.proxy == nil {
		return 0
	}
	return d.proxy.Bytes()
}

// Pid is the server's process: its own (Process) or this one.
func (d *Domain) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		return d.cmd.Process.Pid
	}
	return os.Getpid()
}

// Start starts the domain's server, on the same data and port as before,
// and waits until it serves.
func (d *Domain) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running {
		return fmt.Errorf("sandbox: %s is running", d.Name)
	}
	var err error
	if d.sb.cfg.Kind == Process {
		err = d.startProcess(ctx)
	} else {
		err = d.startInProcess(ctx)
	}
	if err != nil {
		return fmt.Errorf("sandbox: %s: %w", d.Name, err)
	}
	d.running, d.started = true, true
	return nil
}

// Stop stops the server gracefully (a process: SIGTERM, SIGKILL after
// 15 s) and returns how it ended: nil for a clean shutdown.
func (d *Domain) Stop() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.running {
		return nil
	}
	d.running = false
	if d.sb.cfg.Kind == Process {
		return terminate(d.cmd, d.done, d.exit)
	}
	d.cancel()
	err := <-d.served
	return errors.Join(err, d.Server.Close())
}

// Kill ends a process with SIGKILL, as a crash would, and waits for it;
// an in-process server cannot crash, and stops as Stop does.
func (d *Domain) Kill() {
	if d.sb.cfg.Kind != Process {
		d.Stop()
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running {
		d.running = false
		d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.done
	}
}

func (d *Domain) startInProcess(ctx context.Context) error {
	ln := d.ln
	d.ln = nil
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", d.port)); err != nil {
			return err
		}
	}
	log := d.sb.cfg.Log
	if log == nil {
		var level slog.Level
		if err := level.UnmarshalText([]byte(d.sb.cfg.LogLevel)); err != nil {
			ln.Close()
			return fmt.Errorf("log level: %w", err)
		}
		log = slog.New(slog.NewTextHandler(&d.log, &slog.HandlerOptions{Level: level}))
	}
	cfg := server.Config{DataDir: d.Dir, Domain: d.Name, Log: log, PublicURL: d.URL,
		DNS: d.sb.DNS(), PeerCA: d.sb.CA, AllowPrivatePeers: true, SMTP: d.SMTP,
		MetaURL: d.sb.cfg.Backends[d.Name].Meta, ResourcesURL: d.sb.cfg.Backends[d.Name].Resources}
	if d.sb.cfg.Server != nil {
		d.sb.cfg.Server(&cfg)
	}
	// The server outlives ctx: it runs until Stop.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	srv, err := server.Open(sctx, cfg)
	if err != nil {
		cancel()
		ln.Close()
		return err
	}
	if !d.started {
		if err := d.addUsers(ctx, srv.Meta); err != nil {
			cancel()
			ln.Close()
			srv.Close()
			return err
		}
	}
	served := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		err := srv.ServeListener(sctx, ln, func(string) { close(ready) })
		if err != nil && sctx.Err() == nil {
			d.sb.report(fmt.Errorf("%s: %w", d.Name, err))
		}
		served <- err
	}()
	select {
	case <-ready:
	case err := <-served:
		cancel()
		srv.Close()
		return err
	}
	d.Server, d.cancel, d.served = srv, cancel, served
	return nil
}

func (d *Domain) startProcess(ctx context.Context) error {
	node := ""
	if len(d.nodes) > 0 {
		node = d.NodeName()
	}
	for try := 1; ; try++ {
		mark := len(d.log.String())
		cmd, done, exit, err := d.serve(ctx, d.Dir, d.port, node, &d.log)
		if err == nil {
			d.cmd, d.done, d.exit = cmd, done, exit
			return nil
		}
		// The mail exchanger's port was free when listen picked it, but
		// the kernel may have handed it to an outgoing connection since
		// (both come from the ephemeral range). It is published nowhere
		// but Domain.SMTP, so another one will do; the HTTPS port is in
		// DNS and cannot change.
		smtpTaken := d.SMTP != "" && strings.Contains(d.log.String()[mark:], "listening for SMTP on "+d.SMTP) &&
			strings.Contains(d.log.String()[mark:], "address already in use")
		if !smtpTaken || try == 3 {
			return err
		}
		p, perr := FreePort()
		if perr != nil {
			return err
		}
		d.SMTP = fmt.Sprintf("127.0.0.1:%d", p)
	}
}

// serve starts 'pullmail serve' for the domain on the data directory dir
// and port (node, when set, is its --node), logging to log, and waits
// until it serves. done is closed once the process has been waited for,
// and *exit is then how it ended.
func (d *Domain) serve(ctx context.Context, dir string, port int, node string, log *Buffer) (*exec.Cmd, chan struct{}, *error, error) {
	cfg := d.sb.cfg
	args := []string{"serve"}
	if cfg.Command != nil {
		args = cfg.Command(d.Name)
	}
	args = append(args, "--data", dir, "--domain", d.Name,
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--public-url", d.URL,
		"--dns", d.sb.DNS(), "--peer-ca", d.sb.CA, "--allow-private-peers", "--log-level", cfg.LogLevel)
	args = append(args, d.backendFlags()...)
	if node != "" {
		args = append(args, "--node", node)
	}
	if d.SMTP != "" && dir == d.Dir {
		args = append(args, "--smtp", d.SMTP)
	}
	args = append(args, cfg.ServeFlags...)
	cmd := exec.Command(cfg.Binary, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	done := make(chan struct{})
	exit := new(error)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "pullmail serving") {
				close(ready)
				break
			}
		}
		io.Copy(io.Discard, stdout)
		*exit = cmd.Wait()
		close(done)
	}()
	select {
	case <-ready:
		return cmd, done, exit, nil
	case <-done:
		return nil, nil, nil, fmt.Errorf("exited at start (%v): %s", *exit, lastLines(log.String(), 10))
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	return nil, nil, nil, fmt.Errorf("did not start: %s", lastLines(log.String(), 10))
}

// addUsersByCLI creates the users with the binary's admin commands, as an
// operator would, before the server starts.
func (d *Domain) addUsersByCLI(ctx context.Context) error {
	for _, addr := range d.addrs {
		pw, kept := password(d.Dir, addr)
		if !kept {
			if _, err := d.run(ctx, pw+"\n", append(append([]string{"user", "add", "--data", d.Dir}, d.backendFlags()...), addr)...); err != nil {
				return err
			}
			if err := keepPassword(d.Dir, addr, pw); err != nil {
				return err
			}
		}
		tok, err := d.run(ctx, "", append(append([]string{"token", "create", "--data", d.Dir}, d.backendFlags()...), addr, "--label", d.sb.cfg.TokenLabel)...)
		if err != nil {
			return err
		}
		d.setUser(User{Address: addr, Token: strings.TrimSpace(tok), Password: pw})
	}
	return nil
}

// run runs a pullmail command and returns its standard output.
func (d *Domain) run(ctx context.Context, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.sb.cfg.Binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("pullmail %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
