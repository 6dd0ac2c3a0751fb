package mailbox_test

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/testenv"
)

// patterned is a large deterministic resource that is never in memory.
type patterned struct{}

func (patterned) ReadAt(p []byte, off int64) (int, error) {
	for i := range p {
		x := uint64(off+int64(i)) * 0x9E3779B97F4A7C15
		p[i] = byte(x >> 56)
	}
	return len(p), nil
}

// BenchmarkResumableUpload uploads 256 MiB over HTTPS as a resumable
// upload in 8 MiB PATCHes and commits it: staging (fsync per chunk), the
// commit's second read into the resource store, and the client's copy. It
// reports MiB/s and the peak heap of the process (client and server).
func BenchmarkResumableUpload(b *testing.B) {
	const size, chunk = 256 << 20, 8 << 20
	d := testenv.Start(b, "a.test", testenv.Options{})
	alice := d.AddUser(b, "alice@a.test")
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	runtime.GC()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := alice.UploadResumable(ctx, patterned{}, size, "", chunk, 0); err != nil {
			b.Fatal(err)
		}
		// Each iteration stores the same resource: the commit reads and
		// hashes it again but writes no second copy.
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(size)*float64(b.N)/(1<<20)/b.Elapsed().Seconds(), "MiB/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
}
