package mimeconv

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// spoolMemory is how many bytes a spool keeps in memory before it moves to
// a temporary file: a record's literal stream or a quoted-printable body is
// small for nearly all mail, and a bounded buffer keeps the rest constant in
// memory.
const spoolMemory = 1 << 20

// spool is an append-only byte store that starts in memory and spills to a
// temporary file in dir. Its bytes can be read back at any offset while it
// grows.
type spool struct {
	dir  string
	mem  []byte
	file *os.File
	size int64
}

func (s *spool) Write(p []byte) (int, error) {
	if s.file == nil && len(s.mem)+len(p) <= spoolMemory {
		s.mem = append(s.mem, p...)
		s.size += int64(len(p))
		return len(p), nil
	}
	if s.file == nil {
		f, err := os.CreateTemp(s.dir, "mimeconv-*")
		if err != nil {
			return 0, fmt.Errorf("spooling: %w", err)
		}
		// Unlinked at once where the system allows it: nothing to clean
		// up after a crash.
		_ = os.Remove(f.Name())
		s.file = f
		if _, err := f.Write(s.mem); err != nil {
			return 0, fmt.Errorf("spooling: %w", err)
		}
		s.mem = nil
	}
	n, err := s.file.Write(p)
	s.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("spooling: %w", err)
	}
	return n, nil
}

// Len returns the number of bytes written.
func (s *spool) Len() int64 { return s.size }

// ReadAt reads bytes already written.
func (s *spool) ReadAt(p []byte, off int64) (int, error) {
	if s.file == nil {
		if off >= int64(len(s.mem)) {
			return 0, io.EOF
		}
		n := copy(p, s.mem[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	return s.file.ReadAt(p, off)
}

// Reader returns the bytes written so far, from the start.
func (s *spool) Reader() io.Reader {
	if s.file == nil {
		return bytes.NewReader(s.mem)
	}
	return io.NewSectionReader(s.file, 0, s.size)
}

// Bytes returns the bytes when they are in memory, else nil.
func (s *spool) Bytes() []byte {
	if s.file != nil {
		return nil
	}
	return s.mem
}

// Close releases the temporary file, if any.
func (s *spool) Close() error {
	if s.file == nil {
		return nil
	}
	f := s.file
	s.file = nil
	name := f.Name()
	err := f.Close()
	_ = os.Remove(name) // where the unlink at creation did not happen
	return err
}
