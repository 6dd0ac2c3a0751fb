// Package s3test runs a real S3 server for tests: versitygw on a POSIX
// directory, on 127.0.0.1, built from source through the Go module proxy
// into a cache directory (never a dependency of go.mod), as pullmail bench
// builds its peers.
//
// Where versitygw cannot be had, Start skips the test with the reason;
// with the environment variable CI set (CI=true: .ci/run) it fails instead.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/pullmail/pullmail/resource/s3store"
	"github.com/pullmail/pullmail/tlsca"
)

// The versitygw release the tests run.
const (
	Module  = "github.com/versity/versitygw"
	Version = "v1.8.0"
)

// CacheDir is where the binary is kept between runs:
// $PULLMAIL_CACHE/versitygw, else the user cache directory's
// pullmail/versitygw (~/.cache/pullmail/versitygw).
func CacheDir() (string, error) {
	if d := os.Getenv("PULLMAIL_CACHE"); d != "" {
		return filepath.Join(d, "versitygw"), nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "pullmail", "versitygw"), nil
}

// Binary returns the versitygw binary: $PULLMAIL_VERSITYGW when set, else
// the cached one, building it first when it is not there ('go mod download'
// of the module, a copy of its read-only directory, 'go build'; a lock file
// keeps parallel test binaries from building it twice).
func Binary() (string, error) {
	if p := os.Getenv("PULLMAIL_VERSITYGW"); p != "" {
		return p, nil
	}
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "versitygw-"+Version, "versitygw")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "build.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // built by another test binary meanwhile
	}
	return bin, build(bin)
}

func build(bin string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building versitygw needs the go command: %w", err)
	}
	out, err := exec.Command(goBin, "mod", "download", "-json", Module+"@"+Version).Output()
	if err != nil {
		return fmt.Errorf("go mod download %s@%s: %w", Module, Version, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download %s@%s: no module directory (%v %s)", Module, Version, err, mod.Error)
	}
	tmp, err := os.MkdirTemp("", "pullmail-versitygw-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "versitygw")
	if err := os.CopyFS(src, os.DirFS(mod.Dir)); err != nil {
		return fmt.Errorf("copying %s: %w", mod.Dir, err)
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", bin+".tmp", "./cmd/versitygw")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "CGO_ENABLED=0", "GOFLAGS=-mod=mod -buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build versitygw: %v: %s", err, lastLines(out, 10))
	}
	return os.Rename(bin+".tmp", bin)
}

func lastLines(b []byte, n int) string {
	l := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// Server is a running versitygw with one bucket.
type Server struct {
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint string
	// Bucket exists and is empty at Start.
	Bucket string
	// AccessKey and SecretKey are the root user's.
	AccessKey, SecretKey string
	// Dir is the POSIX directory behind it.
	Dir string
	// CAFile, for a server started by StartTLS, is the PEM file of the CA
	// that issued its certificate (s3store.Options.CAFile).
	CAFile string
	// Cmd is the process (for its peak RSS: Cmd.ProcessState after Stop).
	Cmd *exec.Cmd

	stop     func()
	prefixes sync.Mutex
	n        int
}

// unavailable skips, or fails under CI.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and the S3 server for tests is unavailable: %s", msg)
	}
	t.Skipf("no S3 server for tests (%s); set CI=true to make this a failure", msg)
}

// Start builds (once) and starts versitygw on a new directory, serving
// http://127.0.0.1:PORT, makes a bucket and stops the server when t ends.
func Start(t testing.TB) *Server { return start(t, false) }

// StartTLS is Start with https, on a certificate for 127.0.0.1 from a new
// CA (Server.CAFile).
func StartTLS(t testing.TB) *Server { return start(t, true) }

func start(t testing.TB, withTLS bool) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		unavailable(t, "versitygw %s cannot be built: %v", Version, err)
	}
	s := &Server{Bucket: "pullmail-test", AccessKey: "pullmail-test-" + rand.Text()[:8], SecretKey: rand.Text(), Dir: t.TempDir()}
	var args []string
	if withTLS {
		cert, key, err := s.certificate()
		if err != nil {
			t.Fatalf("making the S3 server's certificate: %v", err)
		}
		args = []string{"--cert", cert, "--key", key}
	}
	var lastErr error
	for range 3 { // a port taken between probing and listening: another
		if lastErr = s.start(bin, args); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		unavailable(t, "starting versitygw: %v", lastErr)
	}
	t.Cleanup(s.Stop)
	if err := s.Client(t).MakeBucket(t.Context(), s.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("making bucket %s on versitygw: %v", s.Bucket, err)
	}
	return s
}

// certificate issues the server's certificate from a new CA in s.Dir.
func (s *Server) certificate() (certPath, keyPath string, err error) {
	ca, err := tlsca.LoadOrCreate(filepath.Join(s.Dir, "ca"))
	if err != nil {
		return "", "", err
	}
	s.CAFile = ca.CertPath()
	return ca.IssueFiles([]string{"127.0.0.1"}, 24*time.Hour, s.Dir)
}

func (s *Server) start(bin string, extra []string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	data := filepath.Join(s.Dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	var stderr bytes.Buffer
	args := append([]string{"--port", addr, "--access", s.AccessKey, "--secret", s.SecretKey,
		"--region", "us-east-1", "--quiet"}, extra...)
	cmd := exec.Command(bin, append(args, "posix", data)...)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// It dies with the test binary, even one killed by its timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			return fmt.Errorf("versitygw exited: %s", lastLines(stderr.Bytes(), 5))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("versitygw did not listen on %s within 20s", addr)
		}
	}
	s.Endpoint, s.Cmd = "http://"+addr, cmd
	if len(extra) > 0 {
		s.Endpoint = "https://" + addr
	}
	s.stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	return nil
}

// Stop ends the server (t's cleanup does it too).
func (s *Server) Stop() {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// URL returns a resources URL for a prefix of the bucket that no other
// call of URL returned: each store of a test suite gets an empty one.
func (s *Server) URL() string {
	s.prefixes.Lock()
	s.n++
	n := s.n
	s.prefixes.Unlock()
	q := url.Values{"endpoint": {s.Endpoint}, "region": {"us-east-1"}}
	return "s3://" + s.Bucket + "/t" + strconv.Itoa(n) + "/res?" + q.Encode()
}

// Options are the store options that carry the server's credentials (and
// CA).
func (s *Server) Options() s3store.Options {
	return s3store.Options{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey, CAFile: s.CAFile}
}

// NewBucket returns a new, empty s3store.Bucket on the server.
func (s *Server) NewBucket(t testing.TB, opt s3store.Options) *s3store.Bucket {
	t.Helper()
	cfg, err := s3store.ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	opt.AccessKeyID, opt.SecretAccessKey, opt.CAFile = s.AccessKey, s.SecretKey, s.CAFile
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := s3store.NewBucket(ctx, cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Client returns a minio client of the server's root user, to look at the
// bucket behind a store's back.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	opt := &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), BucketLookup: minio.BucketLookupPath}
	if u.Scheme == "https" {
		pemBytes, err := os.ReadFile(s.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pemBytes)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		opt.Secure, opt.Transport = true, tr
	}
	c, err := minio.New(u.Host, opt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
