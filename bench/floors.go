package bench

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"time"
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

// makeFile writes size pseudo-random bytes (seed picks which) to path and
// fsyncs it, so that its writeback does not compete with what is measured.
func makeFile(path string, size int64, seed byte) error {
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

	if fl.HTTPSCopySeconds, err = httpsCopy(path, dir); err != nil {
		return fl, err
	}
	start = time.Now()
	if err := fsyncCopy(path, filepath.Join(dir, "floor-copy")); err != nil {
		return fl, err
	}
	fl.FsyncWriteSeconds = time.Since(start).Seconds()
	os.Remove(filepath.Join(dir, "floor-copy"))
	return fl, nil
}

// fsyncCopy copies src to a new file dst and fsyncs it.
func fsyncCopy(src, dst string) error {
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

// httpsCopy POSTs src once to a loopback HTTPS server that writes it to a
// file and fsyncs it, and returns the seconds taken.
func httpsCopy(src, dir string) (float64, error) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	}))
	defer srv.Close()
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	req, err := http.NewRequest(http.MethodPost, srv.URL, in)
	if err != nil {
		return 0, err
	}
	req.ContentLength = fi.Size()
	resp, err := srv.Client().Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return 0, fmt.Errorf("HTTPS copy: %s", resp.Status)
	}
	return time.Since(start).Seconds(), nil
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
