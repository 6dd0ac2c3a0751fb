package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/pullmail/pullmail/atomicfile"
	"github.com/pullmail/pullmail/tlsca"
)

// Backends are a domain's stores, as 'pullmail serve --meta' and
// '--resources' take them ("": the data directory's SQLite and files).
type Backends struct {
	Meta, Resources string
}

// backendFlags are the domain's --meta and --resources, for serve and for
// every admin command run on its data.
func (d *Domain) backendFlags() []string {
	b := d.sb.cfg.Backends[d.Name]
	var f []string
	if b.Meta != "" {
		f = append(f, "--meta", b.Meta)
	}
	if b.Resources != "" {
		f = append(f, "--resources", b.Resources)
	}
	return f
}

// Node is one more 'pullmail serve' of a domain (Config.Nodes), on the
// domain's stores (Config.Backends: several nodes need stores they can
// share, PostgreSQL and S3) with a data directory of its own holding a
// copy of the first node's keys, as README's "several nodes" says. The
// domain's public port (its proxy) spreads connections over its running
// nodes, so discovery, pushes and fetches reach any of them.
type Node struct {
	Name string // its --node
	Dir  string // its own data directory
	// Direct is its own port, as Domain.Direct.
	Direct string

	d    *Domain
	port int
	log  Buffer

	mu      sync.Mutex
	running bool
	cmd     *exec.Cmd
	done    chan struct{}
	exit    *error
}

// NodeName is the domain's first node's --node when it has several: n1.
func (d *Domain) NodeName() string { return "n1" }

// Nodes returns the domain's other nodes (Config.Nodes), n2 and on.
func (d *Domain) Nodes() []*Node { return d.nodes }

// addNodes makes the domain's other nodes, their ports and the proxy's
// targets (listen has made the proxy).
func (d *Domain) addNodes(n int) error {
	for i := 2; i <= n; i++ {
		port, err := FreePort()
		if err != nil {
			return err
		}
		nd := &Node{Name: "n" + strconv.Itoa(i), Dir: d.Dir + "-n" + strconv.Itoa(i), d: d, port: port,
			Direct: fmt.Sprintf("https://127.0.0.1:%d", port)}
		d.nodes = append(d.nodes, nd)
		d.proxy.AddTarget(fmt.Sprintf("127.0.0.1:%d", port))
	}
	return nil
}

// Log is what the node logged.
func (n *Node) Log() string { return n.log.String() }

// Pid is the node's process.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Start starts the node (again) on its data and port and waits until it
// serves. Its data directory gets the sandbox's CA and, from the domain's
// first node (started before it), the domain's keys.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running {
		return fmt.Errorf("sandbox: %s node %s is running", n.d.Name, n.Name)
	}
	if err := n.prepare(); err != nil {
		return fmt.Errorf("sandbox: %s node %s: %w", n.d.Name, n.Name, err)
	}
	cmd, done, exit, err := n.d.serve(ctx, n.Dir, n.port, n.Name, &n.log)
	if err != nil {
		return fmt.Errorf("sandbox: %s node %s: %w", n.d.Name, n.Name, err)
	}
	n.cmd, n.done, n.exit, n.running = cmd, done, exit, true
	return nil
}

// prepare copies the CA and the first node's keys/ into the node's data
// directory.
func (n *Node) prepare() error {
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return err
	}
	copyFile := func(src, dst string) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		return atomicfile.Replace(dst, b, 0o600)
	}
	for _, name := range []string{tlsca.CertFile, tlsca.KeyFile} {
		if err := copyFile(filepath.Join(n.d.sb.cfg.Dir, name), filepath.Join(n.Dir, name)); err != nil {
			return err
		}
	}
	keys := filepath.Join(n.d.Dir, "keys")
	return filepath.WalkDir(keys, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, err := filepath.Rel(keys, path)
		if err != nil {
			return err
		}
		return copyFile(path, filepath.Join(n.Dir, "keys", rel))
	})
}

// Kill ends the node with SIGKILL, as a crash would, and waits for it.
func (n *Node) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running {
		n.running = false
		n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.done
	}
}

// Stop stops the node gracefully (SIGTERM, SIGKILL after 15 s) and
// returns how it ended.
func (n *Node) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return nil
	}
	n.running = false
	return terminate(n.cmd, n.done, n.exit)
}

// terminate ends a serve process gracefully: SIGTERM, SIGKILL after 15 s;
// done closes once it has been waited for, and *exit is then how it ended.
func terminate(cmd *exec.Cmd, done <-chan struct{}, exit *error) error {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
	return *exit
}

// checkNodes refuses what cannot run several nodes.
func checkNodes(cfg Config) error {
	for name, n := range cfg.Nodes {
		if n <= 1 {
			continue
		}
		if cfg.Kind != Process {
			return fmt.Errorf("sandbox: %s: several nodes run as processes only", name)
		}
		b := cfg.Backends[name]
		if b.Meta == "" || b.Resources == "" {
			return errors.New("sandbox: " + name + ": several nodes need shared stores (Config.Backends: PostgreSQL and S3)")
		}
	}
	return nil
}
