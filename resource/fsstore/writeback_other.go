//go:build !linux

package fsstore

import "os"

// writeback is a plain file where sync_file_range does not exist; see
// writeback_linux.go.
type writeback struct{ *os.File }

func newWriteback(f *os.File, off int64) *writeback { return &writeback{f} }
