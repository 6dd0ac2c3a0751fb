package dpop

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/keys"
)

// BenchmarkVerify measures DPoP proofs verified per second (issue 3 aims at
// 20,000 on one core; run with -cpu 1). "replay=none" is every check but the
// replay cache, i.e. mostly the signature; "replay=sqlite" is Verify with
// the metadata store (synchronous=FULL, one transaction per proof);
// "UseOnce" is the store's write alone.
func BenchmarkVerify(b *testing.B) {
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	key := mustKey(b)
	algs := []struct {
		name  string
		proof func(b *testing.B, now time.Time) string
	}{
		{"ES256", func(b *testing.B, now time.Time) string {
			p, err := key.Proof("POST", tokenURL, "", "", now)
			if err != nil {
				b.Fatal(err)
			}
			return p
		}},
		{"EdDSA", func(b *testing.B, now time.Time) string {
			pp := newParts(b, edPub, "EdDSA", now)
			return craft(b, pp.h, pp.c, signEdDSA(edPriv))
		}},
	}
	for _, alg := range algs {
		b.Run(alg.name+"/replay=none", func(b *testing.B) {
			e := newEnv(b)
			r := request("POST", alg.proof(b, e.now))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, _, err := e.v.check(r, tokenURL, ""); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
		b.Run(alg.name+"/signature-only", func(b *testing.B) {
			e := newEnv(b)
			tok := alg.proof(b, e.now)
			jws, err := keys.ParseUnverified(tok)
			if err != nil {
				b.Fatal(err)
			}
			jwk, err := publicJWK(jws.Header["jwk"], jose.SignatureAlgorithm(alg.name))
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if err := jws.VerifyWith(jose.SignatureAlgorithm(alg.name), jwk.Key); err != nil {
					b.Fatal("signature does not verify")
				}
			}
			report(b)
		})
		b.Run(alg.name+"/replay=sqlite", func(b *testing.B) {
			e := newEnv(b)
			reqs := make([]*http.Request, b.N)
			for i := range reqs {
				reqs[i] = request("POST", alg.proof(b, e.now))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for _, r := range reqs {
				if _, err := e.v.Verify(b.Context(), r, tokenURL, ""); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
	}
	b.Run("UseOnce/sqlite", func(b *testing.B) {
		e := newEnv(b)
		exp := time.Now().Add(time.Hour)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			fresh, err := e.store.UseOnce(b.Context(), fmt.Sprintf("dpop:bench:%d", i), exp)
			if err != nil || !fresh {
				b.Fatal(fresh, err)
			}
		}
		report(b)
	})
}

func report(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proofs/s")
}
