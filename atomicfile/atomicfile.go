// Package atomicfile writes files that readers never see half-written and
// that concurrent creators agree on: keys and other small secrets.
package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
)

// Create writes data to path, creating its directory (0700) if needed, by a
// temporary file that is synced and then hard-linked into place, so that
// path appears complete or not at all. It fails with an error satisfying
// errors.Is(err, os.ErrExist) when path already exists: when two processes
// race to create the same key, exactly one wins and the other should read
// the winner's file.
func Create(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// IsExist reports whether err says the file was already there.
func IsExist(err error) bool { return errors.Is(err, os.ErrExist) }
