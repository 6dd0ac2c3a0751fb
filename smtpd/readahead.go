package smtpd

import (
	"io"
	"sync"
)

// readAhead reads its source in a goroutine of its own, a few chunks ahead
// of the consumer. go-smtp's DATA reader undoes dot-stuffing one byte at a
// time, which on a large message costs as much CPU as the conversion that
// consumes it (decoding, hashing, encryption, writing); with readAhead the
// two run on two cores instead of one after the other (BENCHMARKS,
// workload 6).
//
// Stop must be called before the source is used by anyone else (go-smtp
// drains the DATA reader after the session's Data returns): it waits for
// the goroutine's read in flight to end.
type readAhead struct {
	full chan chunk
	free chan []byte
	stop chan struct{}
	done chan struct{}
	cur  chunk
	off  int
	err  error
	once sync.Once
}

type chunk struct {
	b   []byte
	err error
}

// newReadAhead starts reading src in chunks of size, at most n ahead.
func newReadAhead(src io.Reader, size, n int) *readAhead {
	ra := &readAhead{full: make(chan chunk, n), free: make(chan []byte, n+1), stop: make(chan struct{}),
		done: make(chan struct{})}
	for range n + 1 {
		ra.free <- make([]byte, size)
	}
	go ra.run(src)
	return ra
}

func (ra *readAhead) run(src io.Reader) {
	defer close(ra.done)
	defer close(ra.full)
	for {
		var b []byte
		select {
		case b = <-ra.free:
		case <-ra.stop:
			return
		}
		var n int
		var err error
		for n == 0 && err == nil {
			n, err = src.Read(b)
		}
		select {
		case ra.full <- chunk{b: b[:n], err: err}:
		case <-ra.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// Read returns what the goroutine read, in order, then its error.
func (ra *readAhead) Read(p []byte) (int, error) {
	for ra.off >= len(ra.cur.b) {
		if ra.err != nil {
			return 0, ra.err
		}
		if ra.cur.b != nil {
			ra.free <- ra.cur.b[:cap(ra.cur.b)]
			ra.cur.b = nil
		}
		c, ok := <-ra.full
		if !ok {
			ra.err = io.ErrClosedPipe
			return 0, ra.err
		}
		ra.cur, ra.off = c, 0
		if c.err != nil {
			ra.err = c.err
		}
		if len(c.b) == 0 && c.err != nil {
			return 0, c.err
		}
	}
	n := copy(p, ra.cur.b[ra.off:])
	ra.off += n
	return n, nil
}

// Stop ends the goroutine and waits for it: after Stop, nothing reads the
// source any more.
func (ra *readAhead) Stop() {
	ra.once.Do(func() { close(ra.stop) })
	<-ra.done
}

// The read-ahead's chunks: 64 KiB (what a TLS connection delivers in a few
// records), at most 8 in flight (512 KiB per message being received).
const (
	readAheadChunk  = 64 << 10
	readAheadChunks = 8
)
