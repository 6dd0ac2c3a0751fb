package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the data directory's lock, DIR/lock: a running server holds an
// exclusive advisory lock (flock) on it for its whole life, and writes its
// pid into it so that a second server can name the holder.
const LockFile = "lock"

// ErrLocked is the error (in the chain) of a server refused because another
// server holds the data directory.
var ErrLocked = errors.New("the data directory is in use by another server")

// lockDataDir creates dir if needed and takes its lock without waiting. Two
// servers on one directory would each clear the other's temporary files and
// break its uploads, so the second one refuses to start. Only servers lock:
// the admin commands (pullmail user add, ...) open the metadata store beside
// a running server, which SQLite makes safe. The lock is released when the
// returned file is closed, or when the process ends, however it ends.
func lockDataDir(dir string) (*os.File, error) {
	if dir == "" {
		return nil, errors.New("no data directory: pass --data DIR")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the data directory's lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		holder := "another process"
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				holder = "process " + strconv.Itoa(pid)
			}
		}
		return nil, fmt.Errorf("data directory %s: %w (%s holds %s); stop it first: %w", dir, ErrLocked, holder, path, err)
	}
	// The pid is for people and the message above; the lock is the flock.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// LockDataDir takes dir's lock as a server does, for a command that must
// not run beside one (pullmail migrate, restore): while it holds the lock,
// no server starts on dir. Close the file to release it.
func LockDataDir(dir string) (*os.File, error) { return lockDataDir(dir) }
