package bench

import (
	"io"
	"net"
	"testing"
)

// TestProxyKeepsSourceAddress: the server behind the counting proxy sees
// the source address the client dialed from (mox counts deliveries per
// source address), and the proxy counts the bytes both ways.
func TestProxyKeepsSourceAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			seen <- err.Error()
			return
		}
		defer c.Close()
		seen <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		io.Copy(c, c) // echo
	}()
	p, err := startProxy("127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.3.4.1")}}
	c, err := d.Dial("tcp", p.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	if ip := <-seen; ip != "127.3.4.1" {
		t.Errorf("the server saw %s, want the client's 127.3.4.1", ip)
	}
	if n := p.bytes.Load(); n != 10 {
		t.Errorf("the proxy counted %d bytes, want 10 (5 each way)", n)
	}
}
