package sandbox

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Proxy forwards every connection on its listener to a server's real
// port, TLS untouched, counting the bytes both ways as they pass: what a
// domain (or an SMTP server of 'pullmail bench') received and sent on the
// wire. With several targets (a domain's nodes, AddTarget) it takes them
// in turn, connection by connection, and skips one that refuses: a load
// balancer in front of the nodes.
type Proxy struct {
	ln    net.Listener
	to    []string
	next  atomic.Uint64
	bytes atomic.Int64
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// StartProxy listens on addr and forwards to to until closed.
func StartProxy(addr, to string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p := &Proxy{ln: ln, to: []string{to}, conns: map[net.Conn]struct{}{}}
	go p.serve()
	return p, nil
}

// AddTarget adds a server the proxy forwards to.
func (p *Proxy) AddTarget(to string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.to = append(p.to, to)
}

// dial connects to the next target that answers, from local.
func (p *Proxy) dial(d net.Dialer) (net.Conn, error) {
	p.mu.Lock()
	to := slices.Clone(p.to)
	p.mu.Unlock()
	first := int(p.next.Add(1) % uint64(len(to)))
	var errs []error
	for i := range to {
		c, err := d.Dial("tcp", to[(first+i)%len(to)])
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// Addr is where clients connect.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Bytes is what passed so far, both ways, on every connection (those
// still open included).
func (p *Proxy) Bytes() int64 { return p.bytes.Load() }

func (p *Proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(in)
	}
}

func (p *Proxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) forward(in net.Conn) {
	p.track(in, true)
	defer p.track(in, false)
	defer in.Close()
	// Dial from the client's own source address, so that the server sees
	// the address the client chose: mox limits deliveries per source
	// address, and 'pullmail bench' spreads its connections over many.
	var d net.Dialer
	if a, ok := in.RemoteAddr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
		d.LocalAddr = &net.TCPAddr{IP: a.IP}
	}
	out, err := p.dial(d)
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

// Close stops listening and breaks every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// countingWriter adds what it writes to n as it goes, so that connections
// kept alive are counted too. It counts before it writes (and takes back
// what a short write did not send), so a peer that has read the bytes
// always finds them counted: counting after the write raced the reader.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	n, err := c.w.Write(b)
	if n < len(b) {
		c.n.Add(int64(n - len(b)))
	}
	return n, err
}

// FreePort returns a loopback port that was free a moment ago, chosen
// below the kernel's ephemeral range (ip_local_port_range), so that no
// outgoing connection is handed it before the server that was given it
// binds it (or binds it again after a restart): a port from ":0" is an
// ephemeral one, and the sandbox's restarts found theirs taken that way.
func FreePort() (int, error) {
	lo := ephemeralLow()
	if lo > 20000 {
		for range 200 {
			p := 10000 + rand.IntN(lo-10000)
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err == nil {
				ln.Close()
				return p, nil
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux),
// 0 where it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}
