package postgres

import (
	"testing"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/metatest"
	"github.com/pullmail/pullmail/meta/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// openTemp opens a store on a new database of the test cluster.
func openTemp(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.Context(), pgtest.URL(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	metatest.Test(t, func(t *testing.T) meta.Store { return openTemp(t) })
}
