package sqlite

import (
	"testing"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/metatest"
)

// BenchmarkStore is metatest.Bench on SQLite; meta/postgres runs the same.
func BenchmarkStore(b *testing.B) {
	metatest.Bench(b, func(b *testing.B) meta.Store {
		s, _ := openTemp(b)
		return s
	})
}

// BenchmarkSearch is metatest.BenchSearch on SQLite (FTS5).
func BenchmarkSearch(b *testing.B) {
	metatest.BenchSearch(b, func(b *testing.B) meta.Store {
		s, _ := openTemp(b)
		return s
	})
}
