package memstore

import (
	"testing"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/metatest"
)

func TestConformance(t *testing.T) {
	metatest.Test(t, func(t *testing.T) meta.Store { return New() })
}
