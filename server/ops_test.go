package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/server"
)

// TestDataDirLock: a second server on a data directory in use refuses,
// naming the directory and the holder; the admin commands' way in (the
// metadata store alone) still works; after Close a server opens again.
func TestDataDirLock(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	first, err := server.Open(ctx, server.Config{DataDir: dir, Domain: "a.test"})
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "resources", "tmp", "upload-in-progress")
	if err := os.WriteFile(tmp, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = server.Open(ctx, server.Config{DataDir: dir, Domain: "a.test"})
	if !errors.Is(err, server.ErrLocked) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Fatalf("a second server: %v", err)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Fatalf("the refused server touched the first one's temporary files: %v", err)
	}
	admin, err := server.OpenMeta(ctx, dir, "")
	if err != nil {
		t.Fatalf("an admin command beside the server: %v", err)
	}
	if _, err := server.BindDomain(ctx, admin, ""); err != nil {
		t.Fatalf("an admin command beside the server: %v", err)
	}
	admin.Close()
	first.Close()
	again, err := server.Open(ctx, server.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	again.Close()
}

// TestReadyz: /readyz is 200 while every store works and 503 unready,
// naming the check, when one does not; /healthz stays 200 (liveness).
func TestReadyz(t *testing.T) {
	replaceWithFile := func(dir string) func(*testing.T, *live) {
		return func(t *testing.T, l *live) {
			p := filepath.Join(l.dir, dir)
			if err := os.RemoveAll(p); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("not a directory"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name    string
		cfg     server.Config
		breakIt func(*testing.T, *live)
		failed  []string
	}{
		{name: "healthy"},
		{name: "uploads unwritable", breakIt: replaceWithFile("uploads"), failed: []string{server.CheckUploads}},
		{name: "resources unwritable", breakIt: replaceWithFile(filepath.Join("resources", "tmp")), failed: []string{server.CheckResources}},
		{name: "disk nearly full", cfg: server.Config{ReadyMinFree: 1 << 62}, failed: []string{server.CheckDiskSpace}},
		{name: "metadata store down", breakIt: func(t *testing.T, l *live) { l.srv.Meta.Close() }, failed: []string{server.CheckMetadata}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := serve(t, tc.cfg)
			if tc.breakIt != nil {
				tc.breakIt(t, l)
			}
			resp, body := l.do(t, "GET", "/readyz", "", nil)
			if len(tc.failed) == 0 {
				if resp.StatusCode != 200 || !strings.Contains(string(body), `"ok"`) {
					t.Fatalf("readyz: %d %s", resp.StatusCode, body)
				}
				return
			}
			var got struct {
				Failed []string `json:"failed"`
			}
			json.Unmarshal(body, &got)
			if code := errorCode(t, resp, body); resp.StatusCode != 503 || code != "unready" || !slices.Equal(got.Failed, tc.failed) {
				t.Fatalf("readyz: %d %s", resp.StatusCode, body)
			}
			if tc.failed[0] != server.CheckMetadata {
				if resp, body := l.do(t, "GET", "/healthz", "", nil); resp.StatusCode != 200 {
					t.Fatalf("healthz of an unready server: %d %s", resp.StatusCode, body)
				}
			}
			if _, body := l.do(t, "GET", "/metrics", "", nil); !strings.Contains(string(body), `pullmail_http_errors_total{code="unready"} 1`) {
				t.Fatalf("metrics: %s", grepLines(body, "pullmail_http_errors_total"))
			}
		})
	}
}

// TestTLSAEADOnly: in every TLS mode a TLS 1.2 client offering only CBC
// suites is refused, one offering AES-GCM or ChaCha20-Poly1305 gets in.
func TestTLSAEADOnly(t *testing.T) {
	cbc := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256}
	gcm := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	chacha := []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}
	certFile, keyFile := selfSigned(t)
	for _, mode := range []struct {
		name string
		cfg  server.Config
	}{
		{"local CA", server.Config{}},
		{"certificate files", server.Config{TLSCert: certFile, TLSKey: keyFile}},
		{"ACME", server.Config{ACME: true}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			cfg := mode.cfg
			cfg.DataDir, cfg.Domain = t.TempDir(), "a.test"
			srv, err := server.Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			tc, err := srv.TLSConfig("127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ACME { // no ACME server here: the configuration is all there is to see
				if !slices.Equal(tc.CipherSuites, server.TLS12Suites) || tc.MinVersion != tls.VersionTLS12 {
					t.Fatalf("ACME: suites %v, min version %x", tc.CipherSuites, tc.MinVersion)
				}
				return
			}
			ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() { c.(*tls.Conn).Handshake(); c.Close() }()
				}
			}()
			for _, offer := range []struct {
				name   string
				suites []uint16
				ok     bool
			}{{"CBC only", cbc, false}, {"AES-GCM", gcm, true}, {"ChaCha20-Poly1305", chacha, true}} {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{
					InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: offer.suites})
				if err == nil {
					c.Close()
				}
				if (err == nil) != offer.ok {
					t.Errorf("a TLS 1.2 client offering %s: %v", offer.name, err)
				}
			}
		})
	}
}

// selfSigned writes an ECDSA certificate and key for 127.0.0.1.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "a.test"},
		DNSNames: []string{"a.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestUnreadableDPoPKey: a DPoP key file that exists but cannot be read (a
// directory in its place) fails the start with the path, instead of a new
// key being made over and over against the file that is there.
func TestUnreadableDPoPKey(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "keys", "mta-dpop.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		s, err := server.Open(context.Background(), server.Config{DataDir: dir, Domain: "a.test"})
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "mta-dpop.json") {
			t.Fatalf("Open = %v, want an error naming the key file", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Open did not return: it keeps making keys")
	}
}
