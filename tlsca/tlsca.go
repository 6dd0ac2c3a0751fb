// Package tlsca is the local certificate authority that lets `pullmail serve`
// speak HTTPS with no set-up: on first start it creates a CA in the data
// directory and issues the server's certificate from it; clients trust that
// CA through PULLMAIL_CA instead of a public one.
//
// On-disk layout, in the data directory DIR:
//
//	DIR/ca.pem      the CA certificate (PEM "CERTIFICATE", mode 0644): public,
//	                given to clients (PULLMAIL_CA=DIR/ca.pem)
//	DIR/ca-key.pem  the CA private key (PEM "PRIVATE KEY", PKCS #8, ECDSA
//	                P-256, mode 0600): never leaves the server
//
// The CA is valid for ten years and may sign only end-entity certificates
// (MaxPathLen 0). Leaf certificates are not stored: they are issued again at
// each start.
//
// Creation is safe when several processes (or goroutines) race: each file is
// written to a temporary name, synced, and then published with link(2), which
// fails if the name exists, so exactly one key wins and every loser loads the
// winner's CA. The key is published first and the certificate second; the
// certificate's presence marks a complete CA.
package tlsca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// File names inside the data directory.
const (
	CertFile = "ca.pem"
	KeyFile  = "ca-key.pem"
)

const (
	caValidity = 10 * 365 * 24 * time.Hour
	// backdate absorbs clock skew between the server and its clients.
	backdate = time.Hour
	// abandonAfter is how old a published key without a certificate must be
	// before we decide that its creator died and finish the job ourselves.
	// Between the two links a live creator needs microseconds.
	abandonAfter = 3 * time.Second
	pollEvery    = 10 * time.Millisecond
	// LeafValidity is the lifetime of certificates served by TLSConfig.
	LeafValidity = 90 * 24 * time.Hour
)

// CA is a loaded certificate authority. Its methods are safe for concurrent use.
type CA struct {
	dir     string
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
}

// LoadOrCreate loads the CA kept in dir, creating dir (0700) and the CA if
// there is none. It refuses a key file readable or writable by group or
// others, a key that does not match the certificate, and a certificate
// without its key (the key was lost: clients trust a CA that can no longer
// sign, so an operator must remove ca.pem to start again).
func LoadOrCreate(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	for {
		ca, err := load(dir)
		if err == nil {
			return ca, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		keyInfo, kerr := os.Stat(keyPath)
		_, cerr := os.Stat(certPath)
		switch {
		case kerr != nil && !errors.Is(kerr, fs.ErrNotExist):
			return nil, fmt.Errorf("local CA: %w", kerr)
		case cerr != nil && !errors.Is(cerr, fs.ErrNotExist):
			return nil, fmt.Errorf("local CA: %w", cerr)
		case kerr != nil && cerr == nil:
			return nil, fmt.Errorf("local CA: %s exists but its key %s is missing; remove %s to create a new CA (clients must then trust the new one)", certPath, keyPath, certPath)
		case kerr != nil:
			// Neither file: create both. Losing the race is not an error.
			if err := create(dir); err != nil {
				return nil, err
			}
		case time.Since(keyInfo.ModTime()) > abandonAfter:
			// A key without a certificate, for a while: its creator died
			// between the two links. Certify that key.
			if err := certifyOrphanKey(dir); err != nil {
				return nil, err
			}
		default:
			// Another creator is between its two links.
			time.Sleep(pollEvery)
		}
	}
}

// load reads the CA from dir. An error wrapping fs.ErrNotExist means that
// one of the files is missing.
func load(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	keyPEM, err := readKeyFile(keyPath)
	if err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("reading the local CA certificate: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("local CA key %s: %w", keyPath, err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("local CA certificate %s: %w", certPath, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("local CA certificate %s is not a CA certificate", certPath)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("local CA: the key in %s does not match the certificate in %s", keyPath, certPath)
	}
	return &CA{dir: dir, cert: cert, certPEM: certPEM, key: key}, nil
}

// readKeyFile reads the key file after checking its permissions.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the local CA key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading the local CA key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("local CA key %s is not a regular file", path)
	}
	// Windows has no Unix permission bits: Go reports 0666 for every file.
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("local CA key %s has mode %04o: it must not be accessible to group or others (chmod 600)", path, fi.Mode().Perm())
	}
	b, err := readAllLimit(f, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("reading the local CA key %s: %w", path, err)
	}
	return b, nil
}

func readAllLimit(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}

func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New(`want exactly one PEM "PRIVATE KEY" block`)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errors.New("not an ECDSA P-256 key")
	}
	return ek, nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New(`want exactly one PEM "CERTIFICATE" block`)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// create makes a new key and CA certificate and tries to publish them. If
// another creator published its key first, create returns nil and the
// caller loads the winner's CA.
func create(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating the local CA key: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding the local CA key: %w", err)
	}
	certPEM, err := selfSign(key, time.Now())
	if err != nil {
		return err
	}
	won, err := publish(dir, KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	if err != nil || !won {
		return err
	}
	// Our key is published: the certificate slot is ours unless a process
	// took us for dead (abandonAfter), in which case its certificate is for
	// our key too and load will accept it.
	_, err = publish(dir, CertFile, certPEM, 0o644)
	return err
}

// certifyOrphanKey publishes a certificate for a key whose creator died.
func certifyOrphanKey(dir string) error {
	keyPath := filepath.Join(dir, KeyFile)
	b, err := readKeyFile(keyPath)
	if err != nil {
		return err
	}
	key, err := parseKey(b)
	if err != nil {
		return fmt.Errorf("local CA key %s: %w", keyPath, err)
	}
	certPEM, err := selfSign(key, time.Now())
	if err != nil {
		return err
	}
	_, err = publish(dir, CertFile, certPEM, 0o644)
	return err
}

// selfSign makes the CA certificate for key, as PEM.
func selfSign(key *ecdsa.PrivateKey, now time.Time) ([]byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	name := "Pullmail local CA " + hex.EncodeToString(id)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Pullmail local CA"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("signing the local CA certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("random serial: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil // never 0
}

// publish writes data to dir/name atomically and exclusively: a temporary
// file is written, synced and given its mode, then linked to name, which
// fails if name exists. It reports whether this call created name. The
// directory is synced so that the new name survives a crash.
func publish(dir, name string, data []byte, mode os.FileMode) (won bool, err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // the published name keeps the data
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return false, fmt.Errorf("writing %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return false, fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, fmt.Errorf("syncing %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("writing %s: %w", name, err)
	}
	if err := os.Link(tmp, filepath.Join(dir, name)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("publishing %s: %w", name, err)
	}
	if err := syncDir(dir); err != nil {
		return true, err
	}
	return true, nil
}

func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be opened for syncing there
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// Certificate returns the CA certificate. The caller must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA certificate in PEM, as stored in ca.pem.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// CertPath returns the path of ca.pem, the file clients are told to trust.
func (ca *CA) CertPath() string { return filepath.Join(ca.dir, CertFile) }

// Pool returns a new pool holding only this CA, for clients (and tests)
// that trust nothing else.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Issue makes a server certificate for hosts, each a DNS name ("a.test",
// "localhost") or an IP address ("127.0.0.1", "::1", "[::1]"), valid for
// validity from now (backdated an hour for clock skew, and never beyond the
// CA's own expiry). The returned chain is the leaf then the CA certificate;
// Leaf is set. Duplicate hosts are dropped.
func (ca *CA) Issue(hosts []string, validity time.Duration) (tls.Certificate, error) {
	if len(hosts) == 0 {
		return tls.Certificate{}, errors.New("issuing a certificate: no host names")
	}
	if validity <= 0 {
		return tls.Certificate{}, fmt.Errorf("issuing a certificate: validity %v is not positive", validity)
	}
	now := time.Now()
	if !now.Before(ca.cert.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("the local CA in %s expired on %s: remove %s and %s to create a new one", ca.dir, ca.cert.NotAfter.Format(time.DateOnly), CertFile, KeyFile)
	}
	var dns []string
	var ips []netip.Addr
	seen := map[string]bool{}
	for _, h := range hosts {
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if ip, err := netip.ParseAddr(h); err == nil {
			if ip.Zone() != "" {
				return tls.Certificate{}, fmt.Errorf("issuing a certificate: %q has a zone, which a certificate cannot name", h)
			}
			ip = ip.Unmap()
			if !seen[ip.String()] {
				seen[ip.String()] = true
				ips = append(ips, ip)
			}
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(h, "."))
		if !validDNSName(name) {
			return tls.Certificate{}, fmt.Errorf("issuing a certificate: %q is neither a host name nor an IP address", h)
		}
		if !seen[name] {
			seen[name] = true
			dns = append(dns, name)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating a certificate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	cn := hosts[0]
	if len(dns) > 0 {
		cn = dns[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("signing a certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parsing the new certificate: %w", err)
	}
	return tls.Certificate{
		Certificate: [][]byte{der, ca.cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// validDNSName reports whether s is an ASCII host name (letter-digit-hyphen
// labels; '_' is tolerated as some local set-ups use it) or a wildcard
// "*.name", lower case, at most 253 characters. The last label may not be
// all digits (RFC 3696 §2), so that "10.0.0.1." is not taken for a name.
func validDNSName(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	if strings.Trim(s[strings.LastIndexByte(s, '.')+1:], "0123456789") == "" {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// IssueFiles issues a certificate for hosts as Issue does and writes it for
// a server that reads PEM files (an S3 server, a peer MTA in tests): the
// chain to dir/cert.pem and the PKCS #8 key to dir/key.pem (mode 0600).
func (ca *CA) IssueFiles(hosts []string, validity time.Duration, dir string) (certPath, keyPath string, err error) {
	c, err := ca.Issue(hosts, validity)
	if err != nil {
		return "", "", err
	}
	var certPEM []byte
	for _, der := range c.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
}

// TLSConfig returns a server configuration (TLS 1.2 or later) that serves a
// certificate for hosts issued by this CA. The certificate is issued now, so
// that a bad host name fails here, and issued again when two thirds of its
// LeafValidity have passed, so a long-running server never serves an
// expired one.
func (ca *CA) TLSConfig(hosts []string) (*tls.Config, error) {
	s := &server{ca: ca, hosts: append([]string(nil), hosts...)}
	if _, err := s.get(time.Now()); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.get(time.Now())
		},
	}, nil
}

// server holds the certificate that a TLSConfig serves.
type server struct {
	ca    *CA
	hosts []string

	mu      sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
}

func (s *server) get(now time.Time) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert != nil && now.Before(s.renewAt) {
		return s.cert, nil
	}
	c, err := s.ca.Issue(s.hosts, LeafValidity)
	if err != nil {
		if s.cert != nil && now.Before(s.cert.Leaf.NotAfter) {
			return s.cert, nil // keep serving the old one while it lasts
		}
		return nil, err
	}
	s.cert = &c
	nb, na := c.Leaf.NotBefore, c.Leaf.NotAfter
	s.renewAt = nb.Add(na.Sub(nb) * 2 / 3)
	return s.cert, nil
}

// LoadPool returns the system's trusted roots plus every certificate in the
// PEM file at pemPath (PULLMAIL_CA). A file holding no certificate is an
// error, so that a wrong path or a key file is noticed.
func LoadPool(pemPath string) (*x509.CertPool, error) {
	b, err := os.ReadFile(pemPath)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool() // no system roots here: trust the file alone
	}
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", pemPath, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", pemPath)
	}
	return pool, nil
}
