package fsstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"testing"

	"github.com/pullmail/pullmail/resource"
)

var benchSizes = []int{8 << 20, 64 << 20}

// BenchmarkPut stores a new resource per iteration (hash, write, fsync,
// rename, fsync) and removes it. B/op must not grow with the size.
func BenchmarkPut(b *testing.B) {
	for _, m := range modes {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%dMiB", m.name, n>>20), func(b *testing.B) {
				s := newStore(b, b.TempDir(), m.key)
				data := make([]byte, n)
				r := bytes.NewReader(nil)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				var i uint64
				for b.Loop() {
					i++
					binary.BigEndian.PutUint64(data, i) // a new resource each time
					r.Reset(data)
					info, err := s.Put(b.Context(), struct{ io.Reader }{r}, resource.PutOptions{Size: int64(n)})
					if err != nil {
						b.Fatal(err)
					}
					if err := s.Remove(b.Context(), info.ID); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkOpenRead reads a whole resource, checking its digest (plain) or
// decrypting it (encrypted), through a 64 KiB buffer as an HTTP handler would.
func BenchmarkOpenRead(b *testing.B) {
	for _, m := range modes {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%dMiB", m.name, n>>20), func(b *testing.B) {
				s := newStore(b, b.TempDir(), m.key)
				info, err := s.Put(b.Context(), bytes.NewReader(make([]byte, n)), resource.PutOptions{Size: -1})
				if err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, 64<<10)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					o, err := s.Open(b.Context(), info.ID)
					if err != nil {
						b.Fatal(err)
					}
					got, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{o}, buf)
					if err != nil || got != int64(n) {
						b.Fatalf("read %d bytes, %v", got, err)
					}
					o.Close()
				}
			})
		}
	}
}

// BenchmarkSHA256 is the baseline: hashing the same bytes in memory.
func BenchmarkSHA256(b *testing.B) {
	data := make([]byte, 64<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		sha256.Sum256(data)
	}
}

// BenchmarkPutSmall is the Put of a small message's text: the cost is in
// the file-system calls (create, fsync, rename, directory fsync), not in
// the bytes.
func BenchmarkPutSmall(b *testing.B) {
	s := newStore(b, b.TempDir(), nil)
	data := make([]byte, 1024)
	r := bytes.NewReader(nil)
	var i uint64
	for b.Loop() {
		i++
		binary.BigEndian.PutUint64(data, i)
		r.Reset(data)
		if _, err := s.Put(b.Context(), struct{ io.Reader }{r}, resource.PutOptions{Size: int64(len(data))}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}
