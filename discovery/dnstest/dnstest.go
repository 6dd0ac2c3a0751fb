// Package dnstest is a real DNS server on loopback for tests and for package
// sandbox (`pullmail dev`, `pullmail bench`), so it ships in the binary
// despite its name: it answers the SRV and address records
// that discovery looks up, over UDP and TCP on one port, so that the code
// under test runs Go's own resolver against a real server (net.Resolver
// with PreferGo and its Dial pointed at Addr) instead of a mock.
//
// Records live in memory and may be added and removed at any time, from any
// goroutine. A name with no record at all answers NXDOMAIN; a name that has
// records of other types answers NOERROR with no answer (RFC 2308 NODATA).
// The server is authoritative for every name and never recurses.
package dnstest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Server is a running DNS server. Its methods are safe for concurrent use.
type Server struct {
	udp, tcp *dns.Server
	addr     string

	mu   sync.RWMutex
	recs map[string][]dns.RR // by lower-case FQDN
}

// Start starts a server on 127.0.0.1 with a free port, UDP and TCP.
func Start() (*Server, error) {
	s := &Server{recs: make(map[string][]dns.RR)}
	var lastErr error
	// The UDP port that the system picks may be taken for TCP: try again.
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("dnstest: listening on UDP: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			lastErr = err
			continue
		}
		s.addr = pc.LocalAddr().String()
		s.udp = &dns.Server{PacketConn: pc, Handler: s}
		s.tcp = &dns.Server{Listener: ln, Handler: s}
		if err := start(s.udp); err != nil {
			pc.Close()
			ln.Close()
			return nil, err
		}
		if err := start(s.tcp); err != nil {
			s.udp.Shutdown()
			ln.Close()
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("dnstest: listening on TCP: %w", lastErr)
}

// start serves srv in a goroutine and returns once it is ready.
func start(srv *dns.Server) error {
	ready := make(chan struct{})
	failed := make(chan error, 1)
	srv.NotifyStartedFunc = func() { close(ready) }
	go func() {
		if err := srv.ActivateAndServe(); err != nil {
			failed <- err
		}
	}()
	select {
	case <-ready:
		return nil
	case err := <-failed:
		return fmt.Errorf("dnstest: serving: %w", err)
	}
}

// Addr is the server's address, "127.0.0.1:PORT", for both UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Close stops the server.
func (s *Server) Close() error {
	return errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
}

func fqdn(name string) string { return dns.Fqdn(strings.ToLower(name)) }

func (s *Server) add(rr dns.RR) {
	name := rr.Header().Name
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs[name] = append(s.recs[name], rr)
}

// AddSRV adds an SRV record, e.g. AddSRV("_federizer._as._tcp.a.test", 10,
// 5, 8443, "as.a.test", 3600). A target of "." says that the service is
// not available (RFC 2782).
func (s *Server) AddSRV(name string, priority, weight, port uint16, target string, ttl uint32) {
	s.add(&dns.SRV{
		Hdr:      dns.RR_Header{Name: fqdn(name), Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
		Priority: priority, Weight: weight, Port: port, Target: fqdn(target),
	})
}

// AddA adds an address record for name: an A record for an IPv4 address,
// an AAAA record for an IPv6 one. It panics on a malformed ip, which is a
// bug in the caller.
func (s *Server) AddA(name, ip string) {
	addr := net.ParseIP(ip)
	if addr == nil {
		panic("dnstest: AddA: bad IP address " + ip)
	}
	hdr := dns.RR_Header{Name: fqdn(name), Class: dns.ClassINET, Ttl: 300}
	if v4 := addr.To4(); v4 != nil {
		hdr.Rrtype = dns.TypeA
		s.add(&dns.A{Hdr: hdr, A: v4})
		return
	}
	hdr.Rrtype = dns.TypeAAAA
	s.add(&dns.AAAA{Hdr: hdr, AAAA: addr})
}

// RemoveSRV removes the SRV records of name.
func (s *Server) RemoveSRV(name string) { s.remove(name, dns.TypeSRV) }

// RemoveA removes the A and AAAA records of name.
func (s *Server) RemoveA(name string) {
	s.remove(name, dns.TypeA)
	s.remove(name, dns.TypeAAAA)
}

// Remove removes every record of name.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, fqdn(name))
}

func (s *Server) remove(name string, typ uint16) {
	name = fqdn(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep []dns.RR
	for _, rr := range s.recs[name] {
		if rr.Header().Rrtype != typ {
			keep = append(keep, rr)
		}
	}
	if len(keep) == 0 {
		delete(s.recs, name)
		return
	}
	s.recs[name] = keep
}

// ServeDNS answers one query; it implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.RLock()
	rrs, ok := s.recs[name]
	for _, rr := range rrs {
		if q.Qtype == dns.TypeANY || rr.Header().Rrtype == q.Qtype {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	s.mu.RUnlock()
	if !ok {
		m.Rcode = dns.RcodeNameError
	}
	// UDP answers that do not fit are truncated, and the resolver asks
	// again over TCP (RFC 7766).
	if _, isUDP := w.RemoteAddr().(*net.UDPAddr); isUDP {
		size := 512
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// AddMX adds an MX record, e.g. AddMX("example.net", 10, "mx1.example.net").
// AddMX(name, 0, ".") is a null MX: the domain accepts no mail (RFC 7505).
func (s *Server) AddMX(name string, preference uint16, host string) {
	s.add(&dns.MX{
		Hdr:        dns.RR_Header{Name: fqdn(name), Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 300},
		Preference: preference, Mx: fqdn(host),
	})
}

// AddTXT adds a TXT record (an SPF policy, a DKIM key, a DMARC policy);
// a text longer than 255 bytes is split into strings as DNS requires.
func (s *Server) AddTXT(name, text string) {
	var parts []string
	for len(text) > 255 {
		parts, text = append(parts, text[:255]), text[255:]
	}
	parts = append(parts, text)
	s.add(&dns.TXT{
		Hdr: dns.RR_Header{Name: fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
		Txt: parts,
	})
}
