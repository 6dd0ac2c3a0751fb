package s3store_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/s3store"
	"github.com/pullmail/pullmail/resource/s3store/s3test"
)

// BenchmarkPutGet puts and gets one resource through the store on versitygw
// on loopback and reports the peak RSS of the test process (and of the
// server) during it: the store's memory is constant whatever the size, so
// the sizes report the same peak.
//
//	go test -run '^$' -bench PutGet -benchtime 1x ./resource/s3store/
func BenchmarkPutGet(b *testing.B) {
	srv := s3test.Start(b)
	sizes := []int64{256 << 20, 1 << 30}
	if testing.Short() {
		sizes = []int64{16 << 20, 64 << 20}
	}
	for _, size := range sizes {
		for _, mode := range []string{"plain", "sealed"} {
			for _, declared := range []bool{false, true} {
				name := fmt.Sprintf("%dMiB/%s/declared=%v", size>>20, mode, declared)
				b.Run(name, func(b *testing.B) { benchPutGet(b, srv, size, mode == "sealed", declared) })
			}
		}
	}
}

func benchPutGet(b *testing.B, srv *s3test.Server, size int64, seal, declared bool) {
	opt := srv.Options()
	if seal {
		opt.Key = bytes.Repeat([]byte{9}, 32)
	}
	s, err := s3store.Open(b.Context(), srv.URL(), opt)
	if err != nil {
		b.Fatal(err)
	}
	var want resource.ID
	if declared {
		id, _, err := resource.Copy(b.Context(), io.Discard, io.LimitReader(stream(size), size), resource.PutOptions{Size: -1})
		if err != nil {
			b.Fatal(err)
		}
		want = id
	}
	resetPeak(b, os.Getpid())
	resetPeak(b, srv.Cmd.Process.Pid)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		info, err := s.Put(b.Context(), io.LimitReader(stream(size), size), resource.PutOptions{Size: size, Want: want})
		if err != nil {
			b.Fatal(err)
		}
		o, err := s.Open(b.Context(), info.ID)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, o)
		o.Close()
		if err != nil || n != size {
			b.Fatalf("get: %d bytes, %v", n, err)
		}
		if err := s.Remove(b.Context(), info.ID); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(peak(b, os.Getpid()))/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(peak(b, srv.Cmd.Process.Pid))/(1<<20), "server-peak-RSS-MiB")
}

// stream is an endless, incompressible, cheap byte stream, the same each
// time.
func stream(int64) io.Reader { return rand.NewChaCha8([32]byte{1}) }

// resetPeak resets the peak RSS (VmHWM) of a process (Linux: clear_refs 5).
func resetPeak(b *testing.B, pid int) {
	if err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset the peak RSS of %d (%v): it is the peak since the start", pid, err)
	}
}

// peak is a process's peak RSS in bytes (VmHWM).
func peak(b *testing.B, pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmHWM")
	return 0
}
