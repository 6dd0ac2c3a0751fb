package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// benchSize is the attachment size of BenchmarkUploadDownload:
// PULLMAIL_BENCH_SIZE bytes, default 1 GiB.
func benchSize(b *testing.B) int64 {
	if v := os.Getenv("PULLMAIL_BENCH_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	return 1 << 30
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

// BenchmarkUploadDownload streams one large resource into a running
// 'pullmail serve' over loopback HTTPS and back out, and, in the same run,
// times sha256sum on the same file. It reports both throughputs and the
// server's peak RSS. Run with -benchtime=1x.
func BenchmarkUploadDownload(b *testing.B) {
	size := benchSize(b)
	src := filepath.Join(b.TempDir(), "big.bin")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{1})
	if _, err := io.CopyN(f, rng, size); err != nil {
		b.Fatal(err)
	}
	// Flush the source now, or its writeback competes with the server's.
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	f.Close()

	start := time.Now()
	if out, err := exec.Command("sha256sum", src).CombinedOutput(); err != nil {
		b.Fatalf("sha256sum: %v %s", err, out)
	}
	shaSecs := time.Since(start).Seconds()
	writeSecs, err := fsyncCopy(src, filepath.Join(b.TempDir(), "copy.bin"))
	if err != nil {
		b.Fatal(err)
	}

	dir := b.TempDir()
	mustB(b, "user", "add", "--data", dir, "alice@a.test", "--password", "alice-password")
	tok := strings.TrimSpace(mustB(b, "token", "create", "--data", dir, "alice@a.test"))
	s := serve(b, dir)
	c, err := client.New(s.url, tok, filepath.Join(dir, "ca.pem"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var upSecs, downSecs float64
	for i := 0; i < b.N; i++ {
		f, err := os.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		up, err := c.Upload(ctx, f, mailbox.UploadOptions{Size: size})
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		upSecs += time.Since(start).Seconds()
		m := placeholder.New("alice@a.test", []string{"alice@a.test"}, nil, nil, "big")
		leaf, err := placeholder.NewLeaf(up.ContentID, up.Size, "application/octet-stream", "attachment", "big.bin")
		if err != nil {
			b.Fatal(err)
		}
		m.Parts = append(m.Parts, leaf)
		dr, err := c.CreateDraft(ctx, m.Canonical())
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		rc, _, err := c.Download(ctx, dr.ID, up.ContentID)
		if err != nil {
			b.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, rc)
		rc.Close()
		if err != nil || n != size || resource.IDFromSum(h.Sum(nil)) != up.ContentID {
			b.Fatalf("download: %d bytes, %v", n, err)
		}
		downSecs += time.Since(start).Seconds()
		c.Delete(ctx, dr.ID)
	}
	rss, err := peakRSS(s.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	mb := float64(size) / (1 << 20)
	b.ReportMetric(mb/shaSecs, "sha256sum-MiB/s")
	b.ReportMetric(mb/writeSecs, "fsync-write-MiB/s")
	b.ReportMetric(mb*float64(b.N)/upSecs, "upload-MiB/s")
	b.ReportMetric(mb*float64(b.N)/downSecs, "download-MiB/s")
	b.ReportMetric(float64(rss)/(1<<20), "server-peak-RSS-MiB")
	s.kill()
}

// fsyncCopy copies src to dst and fsyncs it: the floor of any durable
// upload of the same bytes to the same disk. It returns the seconds taken.
func fsyncCopy(src, dst string) (float64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	defer os.Remove(dst)
	start := time.Now()
	if _, err := io.CopyBuffer(out, in, make([]byte, 64<<10)); err != nil {
		out.Close()
		return 0, err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return 0, err
	}
	secs := time.Since(start).Seconds()
	return secs, out.Close()
}

func mustB(b *testing.B, args ...string) string {
	b.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("pullmail %v: %v %s", args, err, out)
	}
	return string(out)
}
