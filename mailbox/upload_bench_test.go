package mailbox_test

import (
	"testing"

	"github.com/pullmail/pullmail/internal/memwatch"
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
	peak := memwatch.Start()
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
	heap := peak.Stop()
	b.ReportMetric(float64(size)*float64(b.N)/(1<<20)/b.Elapsed().Seconds(), "MiB/s")
	b.ReportMetric(heap, "peak-heap-MiB")
}
