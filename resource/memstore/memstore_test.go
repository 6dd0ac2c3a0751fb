package memstore_test

import (
	"testing"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/memstore"
	"github.com/pullmail/pullmail/resource/storetest"
)

// corrupting lets the suite's damage cases flip a stored byte.
type corrupting struct{ *memstore.Store }

func (c corrupting) Corrupt(t *testing.T, id resource.ID, off int64) {
	t.Helper()
	if err := c.Flip(id, off); err != nil {
		t.Fatal(err)
	}
}

func TestConformance(t *testing.T) {
	storetest.Test(t, func(t *testing.T) resource.Store { return corrupting{memstore.New()} })
}

func TestPutRemoveRace(t *testing.T) {
	storetest.PutRemoveRace(t, func(t *testing.T) resource.Store { return memstore.New() })
}
