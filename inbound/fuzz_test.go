package inbound_test

import (
	"testing"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
)

func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(`{"placeholder":{"headers":{},"parts":[]},"chain":[{"headers":{"From":"a@b"},"jwt-assertion":"a.b.c"}]}`))
	f.Add([]byte(`{"placeholder":{},"chain":[]}`))
	f.Add([]byte(`{"placeholder":{},"chain":[{"headers":{},"jwt-assertion":"x"}]} {}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := federation.ParseEnvelope(data, 1<<16)
		if err != nil {
			if k := errs.KindOf(err); k != errs.Invalid && k != errs.TooLarge {
				t.Fatalf("kind %v: %v", k, err)
			}
			return
		}
		if len(e.Chain) == 0 || len(e.Chain) > federation.MaxChain || len(e.Placeholder) == 0 {
			t.Fatalf("accepted %q as %+v", data, e)
		}
	})
}
