package keys

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pullmail/pullmail/errs"
)

func TestClaimsValidate(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) NumericDate { return NewNumericDate(now.Add(d)) }
	const iss, aud = "https://a.example", "https://b.example"
	good := Claims{Issuer: iss, Audience: Audience{aud}, Expiry: at(5 * time.Minute), IssuedAt: at(0), NotBefore: at(0)}
	with := func(edit func(*Claims)) Claims {
		c := good
		edit(&c)
		return c
	}
	want := ClaimsExpect{Issuer: iss, Audience: aud, Now: now, Leeway: 30 * time.Second, MaxLifetime: 10 * time.Minute}
	sole := want
	sole.SoleAudience = true

	tests := []struct {
		name   string
		claims Claims
		want   ClaimsExpect
		msg    string // "" means accepted
	}{
		{"valid", good, want, ""},
		{"valid, sole audience", good, sole, ""},
		{"aud among others", with(func(c *Claims) { c.Audience = Audience{"https://c.example", aud} }), want, ""},
		{"expired within leeway", with(func(c *Claims) { c.Expiry = at(-10 * time.Second) }), want, ""},
		{"nbf within leeway", with(func(c *Claims) { c.NotBefore = at(20 * time.Second) }), want, ""},
		{"no iat, no nbf", with(func(c *Claims) { c.IssuedAt, c.NotBefore = 0, 0 }), want, ""},
		{"no MaxLifetime, exp a year away", with(func(c *Claims) { c.Expiry = at(365 * 24 * time.Hour) }), ClaimsExpect{Issuer: iss, Audience: aud, Now: now}, ""},

		{"exp missing", with(func(c *Claims) { c.Expiry = 0 }), want, "exp missing"},
		{"expired", with(func(c *Claims) { c.Expiry = at(-time.Minute) }), want, "token expired"},
		{"expired exactly at leeway", with(func(c *Claims) { c.Expiry = at(-30 * time.Second) }), want, "token expired"},
		{"nbf in the future", with(func(c *Claims) { c.NotBefore = at(time.Minute) }), want, "nbf in the future"},
		{"iat in the future", with(func(c *Claims) { c.IssuedAt = at(time.Minute) }), want, "iat in the future"},
		{"exp a year away", with(func(c *Claims) { c.Expiry = at(365 * 24 * time.Hour) }), want, "exp more than 10m0s after iat"},
		{"exp a year away, no iat", with(func(c *Claims) { c.Expiry = at(365 * 24 * time.Hour); c.IssuedAt = 0 }), want, "exp more than 10m0s away"},
		{"exp a year away, iat just before it", with(func(c *Claims) {
			c.Expiry = at(365 * 24 * time.Hour)
			c.IssuedAt = at(365*24*time.Hour - 5*time.Minute)
		}), want, "iat in the future"},
		{"iss mismatch", with(func(c *Claims) { c.Issuer = "https://evil.example" }), want, `iss "https://evil.example"`},
		{"iss missing", with(func(c *Claims) { c.Issuer = "" }), want, `iss ""`},
		{"iss differs in case", with(func(c *Claims) { c.Issuer = "https://A.example" }), want, "iss"},
		{"aud another server", with(func(c *Claims) { c.Audience = Audience{"https://c.example"} }), want, "aud does not name"},
		{"aud missing", with(func(c *Claims) { c.Audience = nil }), want, "aud does not name"},
		{"aud array with a stranger", with(func(c *Claims) { c.Audience = Audience{aud, "https://stranger.example"} }), sole, "aud names others"},
		{"aud with a trailing slash", with(func(c *Claims) { c.Audience = Audience{aud + "/"} }), want, "aud does not name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.claims.Validate(tt.want)
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantInvalidToken(t, err, tt.msg)
		})
	}
}

func TestClaimsValidateNeedsExpectations(t *testing.T) {
	c := Claims{Issuer: "i", Audience: Audience{"a"}, Expiry: NewNumericDate(time.Now().Add(time.Minute))}
	for _, want := range []ClaimsExpect{{Audience: "a"}, {Issuer: "i"}} {
		if err := c.Validate(want); errs.KindOf(err) != errs.Internal {
			t.Errorf("Validate(%+v) = %v, want an Internal error", want, err)
		}
	}
	if err := c.Validate(ClaimsExpect{Issuer: "i", Audience: "a"}); err != nil {
		t.Errorf("zero Now should mean time.Now: %v", err)
	}
}

func TestClaimsJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Claims
		bad  bool
	}{
		{"aud string", `{"aud":"x","exp":1900000000}`, Claims{Audience: Audience{"x"}, Expiry: 1900000000}, false},
		{"aud array", `{"aud":["x","y"]}`, Claims{Audience: Audience{"x", "y"}}, false},
		{"aud null", `{"aud":null}`, Claims{}, false},
		{"fractional exp", `{"exp":1900000000.75}`, Claims{Expiry: 1900000000}, false},
		{"exponent exp", `{"exp":1.9e9}`, Claims{Expiry: 1900000000}, false},
		{"cnf", `{"cnf":{"jkt":"abc"},"scope":"internet_mail","azp":"mta","client_id":"mta","jti":"j","sub":"s","iss":"i"}`,
			Claims{Cnf: &Confirmation{JKT: "abc"}, Scope: "internet_mail", AZP: "mta", ClientID: "mta", ID: "j", Subject: "s", Issuer: "i"}, false},
		{"aud number", `{"aud":7}`, Claims{}, true},
		{"aud array of numbers", `{"aud":[7]}`, Claims{}, true},
		{"exp string", `{"exp":"1900000000"}`, Claims{}, true},
		{"exp negative", `{"exp":-1}`, Claims{}, true},
		{"exp after 9999", `{"exp":1e300}`, Claims{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Claims
			err := json.Unmarshal([]byte(tt.in), &c)
			if tt.bad {
				if err == nil {
					t.Fatalf("decoded %+v", c)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(c)
			want, _ := json.Marshal(tt.want)
			if string(got) != string(want) {
				t.Fatalf("decoded %s, want %s", got, want)
			}
		})
	}

	// One audience marshals as a string, several as an array; claims embed.
	type assertion struct {
		Claims
		EHT string `json:"eht"`
	}
	got, err := json.Marshal(assertion{Claims{Audience: Audience{"b"}, Expiry: 5}, "h"})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"aud":"b","exp":5,"eht":"h"}` {
		t.Errorf("marshalled %s", got)
	}
	if got, _ := json.Marshal(Claims{Audience: Audience{"b", "c"}}); string(got) != `{"aud":["b","c"]}` {
		t.Errorf("marshalled %s", got)
	}
}
