package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/pullmail/pullmail/bench"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/testenv"
)

// The benchmarks of issue 4's "Performance" section, each domain its own
// 'pullmail serve' process of a sandbox with the wire counted, driven by
// the workloads of 'pullmail bench' (bench.Pullmail) with their floors.
// Run them by hand, one iteration each:
//
//	go test ./e2e -run '^$' -bench 'Federation|Fanout' -benchtime=1x
//
// PULLMAIL_BENCH_SIZE, PULLMAIL_BENCH_N and PULLMAIL_BENCH_FANOUT_SIZE
// shrink them for a quick run.

// envInt reads a positive integer from the environment, def if unset.
func envInt(b *testing.B, name string, def int64) int64 {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// benchFile writes size pseudo-random bytes to a new file and fsyncs it.
func benchFile(b *testing.B, name string, size int64) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), name)
	if err := bench.MakeFile(path, size, 2); err != nil {
		b.Fatal(err)
	}
	return path
}

// benchDomains starts the users' domains, each its own process behind a
// counting proxy; the first user sends.
func benchDomains(b *testing.B, users ...string) *bench.Pullmail {
	b.Helper()
	sb := testenv.Sandbox(b, sandbox.Config{Kind: sandbox.Process, Binary: bin, Users: users, CountWire: true, LogLevel: "warn"})
	return bench.NewPullmail(sb, users[0])
}

// serverRSS reports the peak RSS of each of the domains' servers in MiB.
func serverRSS(b *testing.B, pm *bench.Pullmail, domains ...string) {
	b.Helper()
	for _, d := range domains {
		rss, err := bench.PeakRSS(pm.Sandbox.Domain(d).Pid())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(rss)/(1<<20), d+"-peak-RSS-MiB")
	}
}

// BenchmarkFederation1GiB sends one message with a PULLMAIL_BENCH_SIZE
// attachment (default 1 GiB) from a.test to b.test, two processes, and
// times Send to bob's copy complete (List polled every 20 ms) against three
// sequential loopback HTTPS copies of the same file in the same run. The
// issue's targets: delivery/3-copies ≤ 1, each server's peak RSS < 100 MiB.
func BenchmarkFederation1GiB(b *testing.B) {
	size := benchSize(b)
	src := benchFile(b, "big.bin", size)
	copySecs, err := bench.HTTPSCopy(src, b.TempDir(), 3)
	if err != nil {
		b.Fatal(err)
	}
	pm := benchDomains(b, "alice@a.test", "bob@b.test")
	ctx := context.Background()
	b.ResetTimer()
	var upSecs, deliverSecs float64
	for i := 0; i < b.N; i++ {
		res, err := pm.SendFile(ctx, src, size, []string{"bob@b.test"}, fmt.Sprintf("big %d", i))
		if err != nil {
			b.Fatal(err)
		}
		if res.Refused != "" || res.Delivered != 1 {
			b.Fatalf("bob's copy: %+v", res)
		}
		upSecs += res.UploadSeconds
		deliverSecs += res.Seconds
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(size)/(1<<20), "MiB")
	b.ReportMetric(upSecs/n, "upload-s")
	b.ReportMetric(deliverSecs/n, "send-to-complete-s")
	b.ReportMetric(copySecs, "3-https-copies-s")
	b.ReportMetric(deliverSecs/n/copySecs, "delivery/3-copies")
	serverRSS(b, pm, "a.test", "b.test")
}

// BenchmarkFederationSmall sends PULLMAIL_BENCH_N small messages (default
// 10000) from a.test to b.test, 16 senders at once, each message with its
// own short text (bench.Pullmail.SendSmall). Latency runs from Send
// returning to bob's copy complete, seen on bob's changes feed (polled
// every 10 ms); throughput is messages over the time from the first Send
// to the last completion. sent-msgs/s is the senders' own rate: when it
// exceeds msgs/s, copies queue at b.test and the latencies grow with N.
func BenchmarkFederationSmall(b *testing.B) {
	const senders = 16
	n := int(envInt(b, "PULLMAIL_BENCH_N", 10000))
	pm := benchDomains(b, "alice@a.test", "bob@b.test")
	ctx := context.Background()
	b.ResetTimer()
	var rate, sendRate, p50, p99 float64
	for range b.N {
		res, err := pm.SendSmall(ctx, n, senders, "bob@b.test")
		if err != nil {
			b.Fatal(err)
		}
		if res.Refused != "" || res.Delivered != n {
			b.Fatalf("%d of %d delivered, refused: %s", res.Delivered, n, res.Refused)
		}
		rate += res.PerSecond
		sendRate += res.SentPerSecond
		p50 += res.P50
		p99 += res.P99
	}
	b.StopTimer()
	it := float64(b.N)
	b.ReportMetric(float64(n), "msgs")
	b.ReportMetric(rate/it, "msgs/s")
	b.ReportMetric(sendRate/it, "sent-msgs/s")
	b.ReportMetric(p50/it*1000, "p50-ms")
	b.ReportMetric(p99/it*1000, "p99-ms")
	serverRSS(b, pm, "a.test", "b.test")
}

// blobBytes adds up the sizes of the files under dir's resources/blobs.
func blobBytes(b *testing.B, dir string) int64 {
	b.Helper()
	var total int64
	err := filepath.WalkDir(filepath.Join(dir, "resources", "blobs"), func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type().IsRegular() {
			fi, err := e.Info()
			if err != nil {
				return err
			}
			total += fi.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}

// BenchmarkFanout sends one message with a PULLMAIL_BENCH_FANOUT_SIZE
// attachment (default 100 MiB) from alice@s.test to 100 recipients, 20 on
// each of five other domains d1.test…d5.test: six processes. Each domain's
// public port is a counting TCP proxy, so every byte between domains is
// counted once (at the domain it goes to); the domains' own clients talk to
// the servers directly. Disk is the blob store of all six domains once every
// copy is complete. The yardsticks are the issue's: 5× the attachment on
// the wire (one pull per recipient domain), 6× on disk (one copy per domain).
func BenchmarkFanout(b *testing.B) {
	const domains, perDomain = 5, 20
	size := envInt(b, "PULLMAIL_BENCH_FANOUT_SIZE", 100<<20)
	src := benchFile(b, "fanout.bin", size)
	var rcpts []string
	for d := 1; d <= domains; d++ {
		for u := 1; u <= perDomain; u++ {
			rcpts = append(rcpts, fmt.Sprintf("u%02d@d%d.test", u, d))
		}
	}
	pm := benchDomains(b, append([]string{"alice@s.test"}, rcpts...)...)
	ctx := context.Background()
	b.ResetTimer()
	if b.N != 1 {
		b.Fatalf("BenchmarkFanout measures one message: run it with -benchtime=1x")
	}
	wire0 := pm.Sandbox.Wire()
	res, err := pm.SendFile(ctx, src, size, rcpts, "fan-out")
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if res.Refused != "" || res.Delivered != len(rcpts) {
		b.Fatalf("%d of %d delivered, refused: %s", res.Delivered, len(rcpts), res.Refused)
	}
	onWire := pm.Sandbox.Wire() - wire0
	var onDisk int64
	for _, d := range pm.Sandbox.Domains() {
		onDisk += blobBytes(b, d.Dir)
	}
	s := float64(size)
	b.ReportMetric(s/(1<<20), "attachment-MiB")
	b.ReportMetric(res.Seconds, "send-to-all-complete-s")
	b.ReportMetric(float64(onWire)/(1<<20), "wire-MiB")
	b.ReportMetric(float64(onWire)/(5*s), "wire/5x")
	b.ReportMetric(float64(onDisk)/(1<<20), "disk-MiB")
	b.ReportMetric(float64(onDisk)/(6*s), "disk/6x")
}
