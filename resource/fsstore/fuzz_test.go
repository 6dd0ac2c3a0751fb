package fsstore

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/storetest"
)

// FuzzPlainSize checks that every file length plainSize accepts is the one
// the writer produces for that plain size, and only that one.
func FuzzPlainSize(f *testing.F) {
	for _, n := range []int64{0, 1, headerSize, headerSize + tagSize, headerSize + sealedChunk, headerSize + sealedChunk + tagSize, 1 << 40} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, fileSize int64) {
		size, err := plainSize(fileSize)
		if err != nil {
			return
		}
		if size < 0 || headerSize+size+numChunks(size)*tagSize != fileSize {
			t.Fatalf("plainSize(%d) = %d, which the writer stores in %d bytes", fileSize, size, headerSize+size+numChunks(size)*tagSize)
		}
	})
}

// FuzzObject runs a sequence of Seek, Read and ReadAt calls on a stored
// object and on a bytes.Reader of the same bytes, and compares.
func FuzzObject(f *testing.F) {
	data := storetest.Data(42, 3*chunkSize+123)
	stores := map[string]*Store{}
	for _, m := range modes {
		s := newStore(f, f.TempDir(), m.key)
		if _, err := s.Put(f.Context(), bytes.NewReader(data), resource.PutOptions{Size: -1}); err != nil {
			f.Fatal(err)
		}
		stores[m.name] = s
	}
	id := resource.IDOf(data)
	f.Add(true, []byte{0, 0, 0, 0, 1, 0, 0, 16})
	f.Add(false, []byte{0, 0xff, 0xff, 0, 1, 0, 1, 0, 2, 0, 0, 10, 1, 0x10, 0, 0})
	f.Add(true, []byte{3, 0, 0, 0, 1, 0x7f, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, encrypted bool, ops []byte) {
		ops = ops[:min(len(ops), 4*32)] // 32 operations are plenty
		s := stores["plain"]
		if encrypted {
			s = stores["encrypted"]
		}
		o, err := s.Open(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		ra := o.(io.ReaderAt)
		ref := bytes.NewReader(data)
		for len(ops) >= 4 {
			op, arg := ops[0]%4, int64(binary.BigEndian.Uint16(ops[1:3]))*7+int64(ops[3])
			ops = ops[4:]
			switch op {
			case 0: // seek from the start
				got, err1 := o.Seek(arg, io.SeekStart)
				want, err2 := ref.Seek(arg, io.SeekStart)
				if got != want || (err1 == nil) != (err2 == nil) {
					t.Fatalf("Seek(%d) = %d, %v; want %d, %v", arg, got, err1, want, err2)
				}
			case 1: // read
				n := int(arg % (2 * chunkSize))
				got, want := make([]byte, n), make([]byte, n)
				k1, err1 := io.ReadFull(o, got)
				k2, err2 := io.ReadFull(ref, want)
				if k1 != k2 || err1 != err2 || !bytes.Equal(got[:k1], want[:k2]) {
					t.Fatalf("ReadFull(%d) = %d, %v; want %d, %v", n, k1, err1, k2, err2)
				}
			case 2: // seek back from the end
				got, err1 := o.Seek(-(arg % int64(len(data)+1)), io.SeekEnd)
				want, err2 := ref.Seek(-(arg % int64(len(data)+1)), io.SeekEnd)
				if got != want || err1 != nil || err2 != nil {
					t.Fatalf("Seek(-%d, End) = %d, %v; want %d, %v", arg, got, err1, want, err2)
				}
			case 3: // ReadAt
				n := int(arg % (2 * chunkSize))
				off := arg * 13 % int64(len(data)+10)
				got, want := make([]byte, n), make([]byte, n)
				k1, err1 := ra.ReadAt(got, off)
				k2, err2 := ref.ReadAt(want, off)
				if k1 != k2 || !bytes.Equal(got[:k1], want[:k2]) || k1 < n && (err1 == nil || err2 == nil) {
					t.Fatalf("ReadAt(%d, %d) = %d, %v; want %d, %v", n, off, k1, err1, k2, err2)
				}
			}
		}
	})
}
