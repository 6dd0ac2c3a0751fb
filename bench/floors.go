package bench

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/pullmail/pullmail/tlsca"
)

// Floor is what the machine itself takes for one file: the physical
// yardsticks of workload 5, measured in the same run.
type Floor struct {
	Size int64 `json:"size"`
	// SHA256Seconds hashes the file once (Go's crypto/sha256, as Pullmail).
	SHA256Seconds float64 `json:"sha256_seconds"`
	// HTTPSCopySeconds POSTs the file once to a loopback HTTPS server that
	// writes it to a file and fsyncs it.
	HTTPSCopySeconds float64 `json:"https_copy_seconds"`
	// FsyncWriteSeconds copies the file to a new file and fsyncs it.
	FsyncWriteSeconds float64 `json:"fsync_write_seconds"`
}

// MakeFile writes size pseudo-random bytes (seed picks which) to path and
// fsyncs it, so that its writeback does not compete with what is measured.
func MakeFile(path string, size int64, seed byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := io.CopyN(w, rand.NewChaCha8([32]byte{seed}), size); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Sync()
}

// measureFloor times the three floors for the file at path, in dir.
func measureFloor(path, dir string) (Floor, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Floor{}, err
	}
	fl := Floor{Size: fi.Size()}

	start := time.Now()
	in, err := os.Open(path)
	if err != nil {
		return fl, err
	}
	h := sha256.New()
	_, err = io.CopyBuffer(h, in, make([]byte, 1<<20))
	in.Close()
	if err != nil {
		return fl, err
	}
	fl.SHA256Seconds = time.Since(start).Seconds()

	if fl.HTTPSCopySeconds, err = HTTPSCopy(path, dir, 1); err != nil {
		return fl, err
	}
	start = time.Now()
	if err := FsyncCopy(path, filepath.Join(dir, "floor-copy")); err != nil {
		return fl, err
	}
	fl.FsyncWriteSeconds = time.Since(start).Seconds()
	os.Remove(filepath.Join(dir, "floor-copy"))
	return fl, nil
}

// FsyncCopy copies src to a new file dst and fsyncs it: the floor of any
// durable write of the same bytes to the same disk.
func FsyncCopy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := io.CopyBuffer(out, in, make([]byte, 1<<20)); err != nil {
		return err
	}
	return out.Sync()
}

// HTTPSCopy POSTs src n times, one after the other on one HTTP/1.1
// connection, to a loopback HTTPS server (its certificate from a CA of its
// own in dir) that writes each to a file in dir and fsyncs it, and returns
// the seconds the copies took: the yardstick of a cross-domain delivery.
func HTTPSCopy(src, dir string, n int) (float64, error) {
	ca, err := tlsca.LoadOrCreate(filepath.Join(dir, "https-copy-ca"))
	if err != nil {
		return 0, err
	}
	tc, err := ca.TLSConfig([]string{"127.0.0.1"})
	if err != nil {
		return 0, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			out, err := os.CreateTemp(dir, "https-copy-")
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer os.Remove(out.Name())
			defer out.Close()
			if _, err := io.CopyBuffer(out, r.Body, make([]byte, 64<<10)); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if err := out.Sync(); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}),
		TLSConfig:         tc,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	defer hc.CloseIdleConnections()
	url := "https://" + ln.Addr().String()
	start := time.Now()
	for range n {
		if err := post(hc, url, src); err != nil {
			return 0, err
		}
	}
	return time.Since(start).Seconds(), nil
}

// post sends the file at src as one request's body.
func post(hc *http.Client, url, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, url, in)
	if err != nil {
		return err
	}
	req.ContentLength = fi.Size()
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("HTTPS copy: %s", resp.Status)
	}
	return nil
}

// SmallFloor is the floor of workload 4: fsync'd writes of one small file
// each, by one writer and by 16.
type SmallFloor struct {
	Writers   int     `json:"writers"`
	Files     int     `json:"files"`
	PerSecond float64 `json:"per_second"`
	P50       float64 `json:"p50_seconds"`
	P99       float64 `json:"p99_seconds"`
}

// measureSmallFloor writes n files of 1 KiB, each fsync'd, with writers
// writers at once.
func measureSmallFloor(dir string, n, writers int) (SmallFloor, error) {
	buf := make([]byte, 1024)
	var mu sync.Mutex
	var lat []float64
	var firstErr error
	next := make(chan int)
	go func() {
		for i := range n {
			next <- i
		}
		close(next)
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t := time.Now()
				p := filepath.Join(dir, fmt.Sprintf("small-%d", i))
				f, err := os.Create(p)
				if err == nil {
					_, err = f.Write(buf)
					if err == nil {
						err = f.Sync()
					}
					f.Close()
				}
				d := time.Since(t).Seconds()
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				lat = append(lat, d)
				mu.Unlock()
				os.Remove(p)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if firstErr != nil {
		return SmallFloor{}, firstErr
	}
	p50, p99 := percentiles(lat)
	return SmallFloor{Writers: writers, Files: n, PerSecond: float64(n) / secs, P50: p50, P99: p99}, nil
}
