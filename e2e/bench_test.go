package e2e

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pullmail/pullmail/bench"
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

// BenchmarkUploadDownload streams one large resource into a running
// 'pullmail serve' over loopback HTTPS and back out, and, in the same run,
// times sha256sum on the same file. It reports both throughputs and the
// server's peak RSS. Run with -benchtime=1x.
func BenchmarkUploadDownload(b *testing.B) {
	size := benchSize(b)
	// Flushed now, or its writeback competes with the server's.
	src := filepath.Join(b.TempDir(), "big.bin")
	if err := bench.MakeFile(src, size, 1); err != nil {
		b.Fatal(err)
	}

	start := time.Now()
	if out, err := exec.Command("sha256sum", src).CombinedOutput(); err != nil {
		b.Fatalf("sha256sum: %v %s", err, out)
	}
	shaSecs := time.Since(start).Seconds()
	start = time.Now()
	if err := bench.FsyncCopy(src, filepath.Join(b.TempDir(), "copy.bin")); err != nil {
		b.Fatal(err)
	}
	writeSecs := time.Since(start).Seconds()

	sb, d := serveA(b, []string{"alice@a.test"})
	c, err := sb.Client("alice@a.test")
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
		c.Purge(ctx, dr.ID) // for good, as before trash: the bench keeps its store small
	}
	rss, err := bench.PeakRSS(d.Pid())
	if err != nil {
		b.Fatal(err)
	}
	mb := float64(size) / (1 << 20)
	b.ReportMetric(mb/shaSecs, "sha256sum-MiB/s")
	b.ReportMetric(mb/writeSecs, "fsync-write-MiB/s")
	b.ReportMetric(mb*float64(b.N)/upSecs, "upload-MiB/s")
	b.ReportMetric(mb*float64(b.N)/downSecs, "download-MiB/s")
	b.ReportMetric(float64(rss)/(1<<20), "server-peak-RSS-MiB")
}
