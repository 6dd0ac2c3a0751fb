package fsstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/pullmail/pullmail/resource/bucket"
)

// Bucket returns the store's directory as a bucket.Bucket: an object named N
// is the file blobs/N[0:2]/N (blobs/N[0:2]/N[2:4]/N in a format 1 store),
// written in tmp/ and committed with fsync, rename and a directory fsync, as
// Put commits a blob. resource/sealed and resource/blobstore over it read
// and write the files of an encrypted and a plain store in their format, so
// that a store of this package can be served by those layers (see the
// package tests, which read directories written by this package).
func (s *Store) Bucket() bucket.Bucket { return dirBucket{s} }

type dirBucket struct{ s *Store }

var _ bucket.Bucket = dirBucket{}

// path is where the object name lives.
func (b dirBucket) path(name string) (dir, file string, err error) {
	if !bucket.ValidName(name) || len(name) < 4 {
		return "", "", fmt.Errorf("fsstore: invalid object name %q", name)
	}
	dir, file = b.s.blobPath(name)
	return dir, file, nil
}

func (b dirBucket) Create(ctx context.Context, opt bucket.CreateOptions) (bucket.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tmp := path.Join(b.s.tmp, rand.Text())
	f, err := b.s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("fsstore: %w", err)
	}
	return &dirWriter{b: b, f: f, wb: newWriteback(f, 0), tmp: tmp, patch: int64(opt.Patch), volatile: opt.Volatile}, nil
}

type dirWriter struct {
	b     dirBucket
	f     *os.File
	wb    *writeback
	tmp   string
	n     int64
	patch int64
	// volatile: no fsync of the file or of its directory (a sidecar that
	// a crash loses is rebuilt; the next blob commit's directory fsync
	// covers its rename too)
	volatile bool
	done     bool
}

func (w *dirWriter) Write(p []byte) (int, error) {
	n, err := w.wb.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *dirWriter) Patch(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > min(w.patch, w.n) {
		return fmt.Errorf("fsstore: patch of %d bytes at %d outside the first %d written", len(p), off, w.patch)
	}
	_, err := w.f.WriteAt(p, off)
	return err
}

func (w *dirWriter) Commit(ctx context.Context, name string) error {
	if w.done {
		return errors.New("fsstore: commit after commit or abort")
	}
	dir, file, err := w.b.path(name)
	if err != nil {
		return err
	}
	if !w.volatile {
		if err := w.f.Sync(); err != nil {
			return fmt.Errorf("fsstore: %w", err)
		}
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("fsstore: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := w.b.s.renameInto(dir, w.tmp, file); err != nil {
		return fmt.Errorf("fsstore: %w", err)
	}
	w.done = true
	if w.volatile {
		return nil
	}
	if err := w.b.s.syncDir(dir); err != nil {
		return fmt.Errorf("fsstore: %w", err)
	}
	return nil
}

func (w *dirWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close() // a second Close after a failed Commit is harmless
	return w.b.s.root.Remove(w.tmp)
}

type sectionFile struct {
	*io.SectionReader
	f *os.File
}

func (s sectionFile) Close() error { return s.f.Close() }

func (b dirBucket) Read(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	bf, err := b.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	f := bf.(openFile)
	if n < 0 {
		n = f.a.Size - off
	}
	return sectionFile{io.NewSectionReader(f, off, n), f.File}, nil
}

func (b dirBucket) Stat(ctx context.Context, name string) (bucket.Attrs, error) {
	_, file, err := b.path(name)
	if err != nil {
		return bucket.Attrs{}, err
	}
	fi, err := b.s.root.Stat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return bucket.Attrs{}, fmt.Errorf("fsstore: %s: %w", name, bucket.ErrNotExist)
	}
	if err != nil {
		return bucket.Attrs{}, fmt.Errorf("fsstore: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return bucket.Attrs{}, fmt.Errorf("fsstore: %s: not a regular file", name)
	}
	return bucket.Attrs{Size: fi.Size(), Modified: fi.ModTime()}, nil
}

func (b dirBucket) Delete(ctx context.Context, name string) error {
	_, file, err := b.path(name)
	if err != nil {
		return err
	}
	if err := b.s.root.Remove(file); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fsstore: %w", err)
	}
	return nil
}

func (b dirBucket) List(ctx context.Context, fn func(string, bucket.Attrs) error) error {
	levels := 1
	if b.s.layout == 1 {
		levels = 2
	}
	return fs.WalkDir(b.s.root.FS(), blobsDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if strings.Count(p, "/") > levels {
				return fs.SkipDir
			}
			return nil
		}
		if _, want, err := b.path(d.Name()); err != nil || p != want || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile
		}
		if err != nil {
			return err
		}
		return fn(d.Name(), bucket.Attrs{Size: fi.Size(), Modified: fi.ModTime()})
	})
}

var _ bucket.Opener = dirBucket{}

// Open implements bucket.Opener: one open file per open resource.
func (b dirBucket) Open(ctx context.Context, name string) (bucket.File, error) {
	_, file, err := b.path(name)
	if err != nil {
		return nil, err
	}
	f, err := b.s.root.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("fsstore: %s: %w", name, bucket.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("fsstore: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s: not a regular file", name)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("fsstore: %w", err)
	}
	return openFile{f, bucket.Attrs{Size: fi.Size(), Modified: fi.ModTime()}}, nil
}

type openFile struct {
	*os.File
	a bucket.Attrs
}

func (f openFile) Attrs() bucket.Attrs { return f.a }
