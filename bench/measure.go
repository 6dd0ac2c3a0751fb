package bench

import (
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// countingProxy forwards every connection on its listener to a server's
// real port, TLS untouched, counting the bytes both ways as they pass.
type countingProxy struct {
	ln    net.Listener
	to    string
	bytes atomic.Int64
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// startProxy listens on addr and forwards to to until closed.
func startProxy(addr, to string) (*countingProxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p := &countingProxy{ln: ln, to: to, conns: map[net.Conn]struct{}{}}
	go p.serve()
	return p, nil
}

func (p *countingProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(in)
	}
}

func (p *countingProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *countingProxy) forward(in net.Conn) {
	p.track(in, true)
	defer p.track(in, false)
	defer in.Close()
	// Dial from the client's own source address, so that the server sees
	// the address the client chose: mox limits deliveries per source
	// address, and the sender spreads its connections over many.
	var d net.Dialer
	if a, ok := in.RemoteAddr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
		d.LocalAddr = &net.TCPAddr{IP: a.IP}
	}
	out, err := d.Dial("tcp", p.to)
	if err != nil {
		return
	}
	p.track(out, true)
	defer p.track(out, false)
	defer out.Close()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		io.CopyBuffer(countingWriter{dst, &p.bytes}, src, make([]byte, 64<<10))
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}
	wg.Add(2)
	go pipe(out, in)
	go pipe(in, out)
	wg.Wait()
}

func (p *countingProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// countingWriter adds what it writes to n as it goes, so that connections
// kept alive are counted too.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// peakRSS reads a process's peak resident set size (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM for %d", pid)
}

// resetPeakRSS sets a process's VmHWM back to its current RSS (Linux:
// "5" written to /proc/PID/clear_refs), so that the next peakRSS is the
// peak of what runs in between.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// rssOf resets (reset true) or reads the peak RSS of every pid; reading
// returns name → bytes.
func rssOf(pids map[string]int, reset bool) map[string]int64 {
	out := map[string]int64{}
	for name, pid := range pids {
		if reset {
			resetPeakRSS(pid)
			continue
		}
		if n, err := peakRSS(pid); err == nil {
			out[name] = n
		}
	}
	return out
}

// diskBytes is the space allocated to the files under dirs (st_blocks ×
// 512), each inode counted once, so hard links are not counted twice.
// SQLite databases, write-ahead logs and queues are included.
func diskBytes(dirs ...string) (int64, error) {
	type key struct{ dev, ino uint64 }
	seen := map[key]bool{}
	var total int64
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			if !e.Type().IsRegular() {
				return nil
			}
			fi, err := e.Info()
			if err != nil {
				return nil // removed meanwhile
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				total += fi.Size()
				return nil
			}
			k := key{uint64(st.Dev), uint64(st.Ino)}
			if seen[k] {
				return nil
			}
			seen[k] = true
			total += st.Blocks * 512
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return total, nil
}

// bigFiles counts the regular files under dirs of at least min bytes.
func bigFiles(min int64, dirs ...string) int {
	n := 0
	for _, dir := range dirs {
		filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return nil
			}
			if fi, err := e.Info(); err == nil && fi.Size() >= min {
				n++
			}
			return nil
		})
	}
	return n
}
