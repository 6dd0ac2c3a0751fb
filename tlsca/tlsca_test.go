package tlsca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCreateAndReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // not there yet: LoadOrCreate makes it
	ca, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Certificate()
	if !strings.HasPrefix(c.Subject.CommonName, "Pullmail local CA ") || len(c.Subject.CommonName) != len("Pullmail local CA ")+8 {
		t.Errorf("CommonName = %q", c.Subject.CommonName)
	}
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("IsCA %v, BasicConstraintsValid %v, MaxPathLen %d, MaxPathLenZero %v", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("KeyUsage %b lacks CertSign", c.KeyUsage)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T is not ECDSA P-256", c.PublicKey)
	}
	if life := c.NotAfter.Sub(c.NotBefore); life < 10*365*24*time.Hour || life > 10*366*24*time.Hour {
		t.Errorf("CA lifetime %v, want ten years", life)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if ca.CertPath() != filepath.Join(dir, "ca.pem") {
		t.Errorf("CertPath = %q", ca.CertPath())
	}
	onDisk, err := os.ReadFile(ca.CertPath())
	if err != nil || !bytes.Equal(onDisk, ca.CertPEM()) {
		t.Errorf("ca.pem differs from CertPEM (%v)", err)
	}
	if runtime.GOOS != "windows" {
		for name, want := range map[string]os.FileMode{"ca.pem": 0o644, "ca-key.pem": 0o600} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("%s mode %04o, want %04o", name, got, want)
			}
		}
	}
	assertOnlyCAFiles(t, dir)

	again, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.CertPEM(), ca.CertPEM()) || !again.key.Equal(ca.key) {
		t.Error("reloading gave another CA")
	}
}

// assertOnlyCAFiles checks that no temporary file is left behind.
func assertOnlyCAFiles(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "ca-key.pem ca.pem" {
		t.Errorf("files in %s: %q, want only ca-key.pem and ca.pem", dir, names)
	}
}

// serve answers TLS handshakes on a loopback port with cfg until the test ends.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err == nil {
					io.WriteString(c, "ok")
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// handshake dials addr as a client and returns the handshake's error.
func handshake(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(b) != "ok" {
		return fmt.Errorf("read %q", b)
	}
	return nil
}

func TestHandshake(t *testing.T) {
	ca, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"a.test", "localhost", "127.0.0.1", "[::1]"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	filePool, err := LoadPool(ca.CertPath())
	if err != nil {
		t.Fatal(err)
	}
	other, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		pool       *x509.CertPool
		serverName string
		wantErr    any // nil, or a pointer to the error type expected
	}{
		{"issued DNS name", ca.Pool(), "a.test", nil},
		{"localhost", ca.Pool(), "localhost", nil},
		{"IP address", ca.Pool(), "127.0.0.1", nil},
		{"pool from ca.pem", filePool, "a.test", nil},
		{"name not issued", ca.Pool(), "b.test", new(x509.HostnameError)},
		{"subdomain not issued", ca.Pool(), "x.a.test", new(x509.HostnameError)},
		{"IP not issued", ca.Pool(), "127.0.0.2", new(x509.HostnameError)},
		{"another CA", other.Pool(), "a.test", new(x509.UnknownAuthorityError)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := handshake(addr, &tls.Config{RootCAs: tc.pool, ServerName: tc.serverName})
			switch want := tc.wantErr.(type) {
			case nil:
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
			case *x509.HostnameError:
				if !errors.As(err, want) {
					t.Fatalf("handshake error %v, want a HostnameError", err)
				}
			case *x509.UnknownAuthorityError:
				if !errors.As(err, want) {
					t.Fatalf("handshake error %v, want an UnknownAuthorityError", err)
				}
			}
		})
	}
}

func TestIssue(t *testing.T) {
	ca, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"A.Test.", "a.test", "localhost", "127.0.0.1", "::ffff:127.0.0.1", "::1"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if len(cert.Certificate) != 2 || !bytes.Equal(cert.Certificate[1], ca.Certificate().Raw) {
		t.Errorf("chain has %d certificates, want the leaf then the CA", len(cert.Certificate))
	}
	if got := strings.Join(leaf.DNSNames, ","); got != "a.test,localhost" {
		t.Errorf("DNSNames = %s", got)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v", leaf.IPAddresses)
	}
	if leaf.IsCA || len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("IsCA %v, ExtKeyUsage %v", leaf.IsCA, leaf.ExtKeyUsage)
	}
	if d := time.Until(leaf.NotAfter); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("leaf expires in %v, want a day", d)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "a.test"}); err != nil {
		t.Errorf("Verify: %v", err)
	}

	long, err := ca.Issue([]string{"a.test"}, 100*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if long.Leaf.NotAfter.After(ca.Certificate().NotAfter) {
		t.Errorf("leaf outlives its CA: %v > %v", long.Leaf.NotAfter, ca.Certificate().NotAfter)
	}

	bad := []struct {
		name     string
		hosts    []string
		validity time.Duration
	}{
		{"no hosts", nil, time.Hour},
		{"empty host", []string{""}, time.Hour},
		{"space", []string{"a b.test"}, time.Hour},
		{"leading hyphen", []string{"-a.test"}, time.Hour},
		{"empty label", []string{"a..test"}, time.Hour},
		{"URL", []string{"https://a.test/"}, time.Hour},
		{"IP with a trailing dot", []string{"10.0.0.1."}, time.Hour},
		{"numeric last label", []string{"a.123"}, time.Hour},
		{"IPv6 zone", []string{"fe80::1%eth0"}, time.Hour},
		{"zero validity", []string{"a.test"}, 0},
		{"negative validity", []string{"a.test"}, -time.Hour},
	}
	for _, tc := range bad {
		if _, err := ca.Issue(tc.hosts, tc.validity); err == nil {
			t.Errorf("%s: Issue(%q, %v) succeeded", tc.name, tc.hosts, tc.validity)
		}
	}
}

func TestTLSConfig(t *testing.T) {
	ca, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.TLSConfig([]string{"not a host"}); err == nil {
		t.Error("TLSConfig accepted a bad host name")
	}
	cfg, err := ca.TLSConfig([]string{"a.test", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x", cfg.MinVersion)
	}
	addr := serve(t, cfg)
	if err := handshake(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "a.test"}); err != nil {
		t.Errorf("handshake: %v", err)
	}
	if err := handshake(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}); err != nil {
		t.Errorf("handshake by IP: %v", err)
	}
	if err := handshake(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "a.test", MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 client was served")
	}

	// The certificate is kept while fresh and issued again near its end.
	s := &server{ca: ca, hosts: []string{"a.test"}}
	now := time.Now()
	first, err := s.get(now)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := s.get(now.Add(LeafValidity / 2)); again != first {
		t.Error("certificate reissued at half its life")
	}
	if renewed, _ := s.get(now.Add(LeafValidity * 3 / 4)); renewed == first {
		t.Error("certificate not reissued at three quarters of its life")
	}
}

func TestKeyPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits")
	}
	dir := t.TempDir()
	if _, err := LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, KeyFile)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644, 0o666, 0o700, 0o400, 0o600} {
		if err := os.Chmod(key, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadOrCreate(dir)
		if ok := mode&0o077 == 0; ok != (err == nil) {
			t.Errorf("key mode %04o: LoadOrCreate error %v", mode, err)
		}
	}
}

func TestConcurrentCreate(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	pems := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ca, err := LoadOrCreate(dir)
			errs[i] = err
			if err == nil {
				pems[i] = ca.CertPEM()
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if !bytes.Equal(pems[i], pems[0]) {
			t.Errorf("goroutine %d got another CA", i)
		}
	}
	onDisk, _ := os.ReadFile(filepath.Join(dir, CertFile))
	if !bytes.Equal(onDisk, pems[0]) {
		t.Error("ca.pem is not the CA every goroutine got")
	}
	assertOnlyCAFiles(t, dir)
}

// TestConcurrentProcesses races several processes (this test binary, run
// again) to create one CA.
func TestConcurrentProcesses(t *testing.T) {
	if dir := os.Getenv("TLSCA_HELPER_DIR"); dir != "" {
		ca, err := LoadOrCreate(dir)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		sum := sha256.Sum256(ca.CertPEM())
		fmt.Println(hex.EncodeToString(sum[:]))
		os.Exit(0)
	}
	if testing.Short() {
		t.Skip("starts processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	const n = 4
	cmds := make([]*exec.Cmd, n)
	outs := make([]*bytes.Buffer, n)
	for i := range n {
		cmds[i] = exec.Command(exe, "-test.run=^TestConcurrentProcesses$")
		cmds[i].Env = append(os.Environ(), "TLSCA_HELPER_DIR="+dir)
		outs[i] = new(bytes.Buffer)
		cmds[i].Stdout, cmds[i].Stderr = outs[i], outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if err := cmds[i].Wait(); err != nil {
			t.Fatalf("process %d: %v: %s", i, err, outs[i])
		}
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(onDisk)
	want := hex.EncodeToString(sum[:])
	for i := range n {
		if got := strings.TrimSpace(outs[i].String()); got != want {
			t.Errorf("process %d loaded CA %s, ca.pem is %s", i, got, want)
		}
	}
	assertOnlyCAFiles(t, dir)
}

func TestCertificateWithoutKey(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, KeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(dir); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("LoadOrCreate without the key: %v, want an error", err)
	}
	if b, _ := os.ReadFile(ca.CertPath()); !bytes.Equal(b, ca.CertPEM()) {
		t.Error("ca.pem was replaced")
	}
}

// TestOrphanKey: a creator died between publishing the key and the
// certificate; the next start certifies the key it left.
func TestOrphanKey(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, KeyFile)
	keyBefore, _ := os.ReadFile(keyPath)
	if err := os.Remove(ca.CertPath()); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(keyPath, old, old); err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if keyAfter, _ := os.ReadFile(keyPath); !bytes.Equal(keyBefore, keyAfter) {
		t.Error("the orphan key was replaced")
	}
	if !again.key.Equal(ca.key) {
		t.Error("the new certificate is for another key")
	}
	assertOnlyCAFiles(t, dir)
}

func TestCorruptFiles(t *testing.T) {
	tests := []struct {
		name      string
		file      string
		transform func(b []byte, ca *CA) []byte
	}{
		{"key garbage", KeyFile, func([]byte, *CA) []byte { return []byte("junk") }},
		{"key empty", KeyFile, func([]byte, *CA) []byte { return nil }},
		{"key is a certificate", KeyFile, func(_ []byte, ca *CA) []byte { return ca.CertPEM() }},
		{"cert garbage", CertFile, func([]byte, *CA) []byte { return []byte("junk") }},
		{"cert twice", CertFile, func(b []byte, _ *CA) []byte { return append(b, b...) }},
		{"cert truncated", CertFile, func(b []byte, _ *CA) []byte { return b[:len(b)/2] }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ca, err := LoadOrCreate(dir)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, tc.file)
			b, _ := os.ReadFile(p)
			if err := os.WriteFile(p, tc.transform(b, ca), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadOrCreate(dir); err == nil {
				t.Error("LoadOrCreate accepted a corrupt file")
			}
		})
	}

	// A key from another CA.
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if _, err := LoadOrCreate(d); err != nil {
			t.Fatal(err)
		}
	}
	other, _ := os.ReadFile(filepath.Join(b, KeyFile))
	if err := os.WriteFile(filepath.Join(a, KeyFile), other, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(a); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched key: %v", err)
	}
}

func TestLoadPool(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := LoadPool(ca.CertPath())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue([]string{"a.test"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "a.test"}); err != nil {
		t.Errorf("a leaf does not verify with the loaded pool: %v", err)
	}

	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := map[string]string{
		"missing":      filepath.Join(dir, "nope.pem"),
		"empty":        write("empty.pem", nil),
		"key only":     filepath.Join(dir, KeyFile),
		"bad DER":      write("bad.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")),
		"not PEM text": write("text.pem", []byte("hello")),
	}
	for name, p := range bad {
		if _, err := LoadPool(p); err == nil {
			t.Errorf("%s: LoadPool(%s) succeeded", name, p)
		}
	}
	// A bundle: the CA after a key and another certificate.
	other, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	bundle := write("bundle.pem", bytes.Join([][]byte{keyPEM, other.CertPEM(), ca.CertPEM()}, nil))
	pool, err = LoadPool(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "a.test"}); err != nil {
		t.Errorf("a leaf does not verify with a bundle: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	dir := f.TempDir()
	if _, err := LoadOrCreate(dir); err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{CertFile, KeyFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := parseKey(b); err == nil && k.Curve != elliptic.P256() {
			t.Errorf("parseKey accepted a %v key", k.Curve.Params().Name)
		}
		if c, err := parseCert(b); err == nil && c.Raw == nil {
			t.Error("parseCert returned a certificate without its DER")
		}
	})
}

func FuzzIssueHosts(f *testing.F) {
	ca, err := LoadOrCreate(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"a.test", "localhost", "127.0.0.1", "[::1]", "*.a.test", "A.TEST.", "a..b", "-a", "a b", "é.test"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		c, err := ca.Issue([]string{host}, time.Hour)
		if err != nil {
			return
		}
		// Whatever Issue accepts must make a certificate that Go can verify
		// for one of its names.
		name := host
		if len(c.Leaf.DNSNames) > 0 {
			name = strings.Replace(c.Leaf.DNSNames[0], "*", "x", 1)
		} else if len(c.Leaf.IPAddresses) > 0 {
			name = c.Leaf.IPAddresses[0].String()
		}
		if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: name}); err != nil {
			t.Errorf("Issue(%q) made a certificate that does not verify for %q: %v", host, name, err)
		}
	})
}

func TestIssueFiles(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreate(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := ca.IssueFiles([]string{"127.0.0.1", "s3.test"}, time.Hour, dir)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatalf("the files do not load as a key pair: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "s3.test"}); err != nil {
		t.Errorf("the certificate does not verify against the CA: %v", err)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}
