package bench

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// PeakRSS reads a process's peak resident set size (VmHWM) in bytes.
func PeakRSS(pid int) (int64, error) {
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

// resetPeakRSS sets a process's VmHWM back to its current RSS (Linux:
// "5" written to /proc/PID/clear_refs), so that the next PeakRSS is the
// peak of what runs in between.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// rssOf resets (reset true) or reads the peak RSS of every pid; reading
// returns name → bytes.
func rssOf(pids map[string]int, reset bool) map[string]int64 {
	out := map[string]int64{}
	for name, pid := range pids {
		if reset {
			resetPeakRSS(pid)
			continue
		}
		if n, err := PeakRSS(pid); err == nil {
			out[name] = n
		}
	}
	return out
}

// diskBytes is the space allocated to the files under dirs (st_blocks ×
// 512), each inode counted once, so hard links are not counted twice.
// SQLite databases, write-ahead logs and queues are included.
func diskBytes(dirs ...string) (int64, error) {
	type key struct{ dev, ino uint64 }
	seen := map[key]bool{}
	var total int64
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			if !e.Type().IsRegular() {
				return nil
			}
			fi, err := e.Info()
			if err != nil {
				return nil // removed meanwhile
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				total += fi.Size()
				return nil
			}
			k := key{uint64(st.Dev), uint64(st.Ino)}
			if seen[k] {
				return nil
			}
			seen[k] = true
			total += st.Blocks * 512
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return total, nil
}

// bigFiles counts the regular files under dirs of at least min bytes.
func bigFiles(min int64, dirs ...string) int {
	n := 0
	for _, dir := range dirs {
		filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return nil
			}
			if fi, err := e.Info(); err == nil && fi.Size() >= min {
				n++
			}
			return nil
		})
	}
	return n
}
