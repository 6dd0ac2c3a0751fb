package fsstore

import (
	"os"

	"golang.org/x/sys/unix"
)

// writebackWindow is how much is written before its writeback starts.
const writebackWindow = 8 << 20

// writeback wraps the temporary file of a Put and, every window, asks the
// kernel to start writing that window to disk (sync_file_range WRITE) and
// waits for the window before it. Without it a large upload piles up as
// dirty page cache that the closing fsync must flush all at once, after
// the network transfer; with it the disk works while bytes arrive and the
// dirty memory of an upload stays under two windows. The fsync at commit
// still decides durability: this only moves the work earlier, so errors
// here are ignored (the fsync reports them).
type writeback struct {
	f      *os.File
	start  int64 // file offset of the first byte written through w
	end    int64 // file offset after the last byte written through w
	kicked int64 // end of the last window handed to writeback
}

// newWriteback wraps f, whose next write lands at offset off.
func newWriteback(f *os.File, off int64) *writeback {
	return &writeback{f: f, start: off, end: off, kicked: off}
}

func (w *writeback) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.end += int64(n)
	for err == nil && w.end-w.kicked >= writebackWindow {
		fd := int(w.f.Fd())
		if prev := w.kicked - writebackWindow; prev >= w.start {
			unix.SyncFileRange(fd, prev, writebackWindow,
				unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
		}
		unix.SyncFileRange(fd, w.kicked, writebackWindow, unix.SYNC_FILE_RANGE_WRITE)
		w.kicked += writebackWindow
	}
	return n, err
}
