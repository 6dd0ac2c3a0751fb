package fsstore

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// LoadOrCreateKey returns the encryption key kept in the file at path,
// creating it first if it does not exist: KeySize random bytes, mode 0600,
// written to a temporary file in the same directory, fsynced and linked into
// place (so two processes creating it at once end up with the same key).
//
// The caller chooses path; keep it apart from the store's directory (and from
// its backups), so that whoever gets the blobs does not get the key with them.
// An existing file must hold exactly KeySize bytes and must not be readable by
// group or others.
func LoadOrCreateKey(path string) ([]byte, error) {
	key, err := loadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return nil, fmt.Errorf("fsstore: creating key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	key = make([]byte, KeySize)
	rand.Read(key) // crypto/rand.Read never fails
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("fsstore: creating key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, fmt.Errorf("fsstore: creating key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("fsstore: creating key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("fsstore: creating key: %w", err)
	}
	// Link fails if someone else created the key meanwhile: theirs wins,
	// never overwrite a key that may already encrypt data.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadKey(path)
		}
		return nil, fmt.Errorf("fsstore: creating key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("fsstore: creating key: syncing %s: %w", dir, err)
		}
	}
	return key, nil
}

func loadKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("fsstore: key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("fsstore: key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("fsstore: key %s: not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("fsstore: key %s: mode %v lets others read it (chmod 600)", path, fi.Mode().Perm())
	}
	if fi.Size() != KeySize {
		return nil, fmt.Errorf("fsstore: key %s: %d bytes, want %d", path, fi.Size(), KeySize)
	}
	key := make([]byte, KeySize)
	if _, err := f.ReadAt(key, 0); err != nil {
		return nil, fmt.Errorf("fsstore: key %s: %w", path, err)
	}
	return key, nil
}

// LoadKey returns the key kept in the file at path, which must exist: for
// tools that open a store made by the server (pullmail fsck) and must not
// make a key of their own.
func LoadKey(path string) ([]byte, error) {
	key, err := loadKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("fsstore: key %s: %w", path, err)
	}
	return key, err
}
