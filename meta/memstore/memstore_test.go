package memstore

import (
	"testing"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/metatest"
)

func TestConformance(t *testing.T) {
	metatest.Test(t, func(t *testing.T) meta.Store { return New() })
}

// BenchmarkStore is metatest.Bench in memory, the floor of the database
// stores' figures.
func BenchmarkStore(b *testing.B) {
	metatest.Bench(b, func(b *testing.B) meta.Store { return New() })
}
