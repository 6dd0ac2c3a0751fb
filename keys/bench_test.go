package keys

import (
	"testing"
	"time"
)

// benchAssertion is the size and shape of a token-exchange assertion (issue 3 §5a).
type benchAssertion struct {
	Claims
	EHT string `json:"eht"`
	EHL string `json:"ehl"`
}

func benchClaims() benchAssertion {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	return benchAssertion{
		Claims: Claims{
			Issuer:   "https://a.example",
			Subject:  "alice@a.example",
			Audience: Audience{"b.example"},
			Expiry:   NewNumericDate(now.Add(5 * time.Minute)),
			IssuedAt: NewNumericDate(now),
			ID:       "Yk3mZ0d3b1Q2c2Vuc2libGUtand0aS12YWx1ZQ",
			Scope:    "internet_mail",
			AZP:      "mta",
			Cnf:      &Confirmation{JKT: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"},
		},
		EHT: "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU",
		EHL: "from,to,subject,date,message-id",
	}
}

// BenchmarkSign measures assertions signed per second (issue 3 aims at ≥ 5,000
// on one core: run with -cpu 1).
func BenchmarkSign(b *testing.B) {
	s, _, _ := newSet(b)
	c := benchClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign("pullmail-assertion+jwt", c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkVerify measures tokens verified per second, signature, header and
// payload checks, and claims validation included.
func BenchmarkVerify(b *testing.B) {
	s, clk, _ := newSet(b)
	c := benchClaims()
	tok, err := s.Sign("pullmail-assertion+jwt", c)
	if err != nil {
		b.Fatal(err)
	}
	want := Expect{Typ: "pullmail-assertion+jwt"}
	ce := ClaimsExpect{Issuer: "https://a.example", Audience: "b.example", Now: clk.Now(), MaxLifetime: 10 * time.Minute, SoleAudience: true}
	b.ReportAllocs()
	for b.Loop() {
		payload, _, err := s.Verify(tok, want)
		if err != nil {
			b.Fatal(err)
		}
		var got benchAssertion
		if err := jsonUnmarshal(payload, &got); err != nil {
			b.Fatal(err)
		}
		if err := got.Validate(ce); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
