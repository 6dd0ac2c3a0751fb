package atomicfile

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// smallDisk mounts a tmpfs of 64 KiB on a new directory for the test, so
// that writes fail with ENOSPC as on a full disk. It needs root (and the
// mount system call); otherwise the test is skipped.
func smallDisk(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestCreateFullDisk: a write that fails (the disk is full) is an error, and
// neither the target nor a temporary file is left behind. Before the fix the
// write's error was scoped to its if statement, and a truncated key file was
// linked into place.
func TestCreateFullDisk(t *testing.T) {
	dir := smallDisk(t)
	for _, tc := range []struct {
		name string
		size int
		ok   bool
	}{
		{"fits", 1 << 10, true},
		{"too large", 256 << 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".json")
			err := Create(path, make([]byte, tc.size), 0o600)
			_, statErr := os.Stat(path)
			if tc.ok {
				if err != nil || statErr != nil {
					t.Fatalf("Create: %v, stat: %v", err, statErr)
				}
				return
			}
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Create on a full disk: %v, want ENOSPC", err)
			}
			if !errors.Is(statErr, os.ErrNotExist) {
				t.Fatalf("the file appeared after a failed write: %v", statErr)
			}
		})
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 || ents[0].Name() != "fits.json" {
		t.Fatalf("files left: %v %v", ents, err)
	}
}
