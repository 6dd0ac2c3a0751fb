package postgres

import (
	"testing"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/metatest"
)

// BenchmarkStore is metatest.Bench on PostgreSQL (the test cluster: local,
// on loopback, fsync on); meta/sqlite runs the same.
func BenchmarkStore(b *testing.B) {
	metatest.Bench(b, func(b *testing.B) meta.Store { return openTemp(b) })
}

// BenchmarkSearch is metatest.BenchSearch on PostgreSQL (tsvector, GIN).
func BenchmarkSearch(b *testing.B) {
	metatest.BenchSearch(b, func(b *testing.B) meta.Store { return openTemp(b) })
}
