// Package atomicfile writes files that readers never see half-written and
// that concurrent creators agree on: keys and other small secrets.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Create writes data to path, creating its directory (0700) if needed, by a
// temporary file that is synced and then hard-linked into place, so that
// path appears complete or not at all: a failed write, sync or close (a full
// disk) returns the error and leaves no file at path. It fails with an error
// satisfying errors.Is(err, os.ErrExist) when path already exists: when two
// processes race to create the same key, exactly one wins and the other
// should read the winner's file. An error syncing the directory after the
// link is returned too, with the file in place but perhaps not durable.
func Create(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := fill(tmp, data, perm); err != nil {
		return fmt.Errorf("atomicfile: writing %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("atomicfile: syncing %s: %w", dir, err)
	}
	return nil
}

// fill sets f's mode, writes data, syncs and closes f, and returns the first
// error of the four: each must succeed before f may be linked into place.
func fill(f *os.File, data []byte, perm os.FileMode) error {
	err := f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// IsExist reports whether err says the file was already there.
func IsExist(err error) bool { return errors.Is(err, os.ErrExist) }

// Replace writes data to path, replacing any file there, by a temporary
// file that is synced and then renamed into place, so that readers see the
// old file or the new one, never half of either.
func Replace(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := fill(tmp, data, perm); err != nil {
		return fmt.Errorf("atomicfile: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	return nil
}
