package bucket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Mem is a Bucket in memory, for fast tests (resource/memstore). The zero
// value is not usable; call NewMem.
type Mem struct {
	mu   sync.Mutex
	objs map[string]memObject
}

type memObject struct {
	data []byte
	mod  time.Time
}

var _ Bucket = (*Mem)(nil)

// NewMem returns an empty Mem.
func NewMem() *Mem { return &Mem{objs: make(map[string]memObject)} }

// Create implements Bucket.
func (m *Mem) Create(ctx context.Context, opt CreateOptions) (Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &memWriter{m: m, patch: opt.Patch}, nil
}

type memWriter struct {
	m     *Mem
	buf   bytes.Buffer
	patch int
	done  bool
}

func (w *memWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("bucket: write after commit or abort")
	}
	return w.buf.Write(p)
}

func (w *memWriter) Patch(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > int64(w.patch) || off+int64(len(p)) > int64(w.buf.Len()) {
		return fmt.Errorf("bucket: patch of %d bytes at %d outside the first %d written", len(p), off, w.patch)
	}
	copy(w.buf.Bytes()[off:], p)
	return nil
}

func (w *memWriter) Commit(ctx context.Context, name string) error {
	if w.done {
		return errors.New("bucket: commit after commit or abort")
	}
	if err := CheckName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w.done = true
	w.m.mu.Lock()
	w.m.objs[name] = memObject{data: w.buf.Bytes(), mod: time.Now()}
	w.m.mu.Unlock()
	return nil
}

func (w *memWriter) Abort() error {
	w.done = true
	return nil
}

func (m *Mem) get(name string) (memObject, error) {
	if err := CheckName(name); err != nil {
		return memObject{}, err
	}
	m.mu.Lock()
	o, ok := m.objs[name]
	m.mu.Unlock()
	if !ok {
		return memObject{}, fmt.Errorf("bucket: %s: %w", name, ErrNotExist)
	}
	return o, nil
}

// Read implements Bucket.
func (m *Mem) Read(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o, err := m.get(name)
	if err != nil {
		return nil, err
	}
	size := int64(len(o.data))
	if n < 0 {
		n = size - off
	}
	if off < 0 || n < 0 || off+n > size {
		return nil, fmt.Errorf("bucket: %s: range %d+%d outside its %d bytes", name, off, n, size)
	}
	return io.NopCloser(bytes.NewReader(o.data[off : off+n])), nil
}

// Stat implements Bucket.
func (m *Mem) Stat(ctx context.Context, name string) (Attrs, error) {
	o, err := m.get(name)
	if err != nil {
		return Attrs{}, err
	}
	return Attrs{Size: int64(len(o.data)), Modified: o.mod}, nil
}

// Delete implements Bucket.
func (m *Mem) Delete(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.objs, name)
	m.mu.Unlock()
	return nil
}

// List implements Bucket.
func (m *Mem) List(ctx context.Context, fn func(string, Attrs) error) error {
	m.mu.Lock()
	names := make([]string, 0, len(m.objs))
	attrs := make([]Attrs, 0, len(m.objs))
	for k, o := range m.objs {
		names = append(names, k)
		attrs = append(attrs, Attrs{Size: int64(len(o.data)), Modified: o.mod})
	}
	m.mu.Unlock()
	for i, k := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(k, attrs[i]); err != nil {
			return err
		}
	}
	return nil
}
