// Package memwatch samples the Go heap while a benchmark runs: the
// constant-memory figures of docs/BENCHMARKS.md ("peak-heap-MiB") come from
// it, one sampler instead of a copy per benchmark.
package memwatch

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Peak samples runtime.MemStats.HeapInuse every few milliseconds until Stop.
type Peak struct {
	peak atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

// Start collects garbage (so that the figure starts from live data only)
// and begins sampling.
func Start() *Peak {
	runtime.GC()
	p := &Peak{stop: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var ms runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > p.peak.Load() {
				p.peak.Store(ms.HeapInuse)
			}
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// Stop ends sampling and returns the highest HeapInuse seen, in MiB.
func (p *Peak) Stop() float64 {
	close(p.stop)
	p.wg.Wait()
	return float64(p.peak.Load()) / (1 << 20)
}
