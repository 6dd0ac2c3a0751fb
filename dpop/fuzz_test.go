package dpop

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/errs"
)

// FuzzVerify feeds arbitrary DPoP header values (one per line) to a
// Verifier: it must never panic, never fail internally, and accept only
// proofs signed by the test's own keys with the seeds' claims. Fuzz workers
// are separate processes, so the keys (testdata/fuzz_key.json, a fixed
// Ed25519 seed), jtis and clock are fixed; the signatures are not. The
// clock is in the past, so the replay cache forgets each jti at once and a
// seed is accepted as often as the fuzzer sends it.
func FuzzVerify(f *testing.F) {
	e := newEnv(f)
	e.now = time.Unix(1700000000, 0)
	data, err := os.ReadFile("testdata/fuzz_key.json")
	if err != nil {
		f.Fatal(err)
	}
	key, err := ParseKey(data)
	if err != nil {
		f.Fatal(err)
	}
	edPriv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	edPub := edPriv.Public().(ed25519.PublicKey)
	edThumb, _ := Thumbprint(jose.JSONWebKey{Key: edPub})
	ours := map[string]bool{key.Thumbprint(): true, edThumb: true}

	var seeds []string
	for i, sign := range []struct {
		pub  any
		alg  string
		sign signFunc
	}{
		{&key.priv.PublicKey, "ES256", signES256(key.priv)},
		{edPub, "EdDSA", signEdDSA(edPriv)},
		{&key.priv.PublicKey, "ES256", signES256(key.priv)},
	} {
		pp := newParts(f, sign.pub, sign.alg, e.now)
		pp.c["jti"] = fmt.Sprintf("fuzz-seed-%d", i)
		if i == 2 {
			pp.c["htu"] = tokenURL + "?query#fragment"
		}
		seeds = append(seeds, craft(f, pp.h, pp.c, sign.sign))
		f.Add(seeds[i])
	}
	for _, s := range seeds {
		if _, err := e.v.Verify(f.Context(), request("POST", s), tokenURL, ""); err != nil {
			f.Fatalf("a seed proof is refused: %v", err)
		}
	}
	f.Add(seeds[0] + "\n" + seeds[1])
	f.Add(seeds[0][:strings.LastIndexByte(seeds[0], '.')] + ".")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c.d.e")
	f.Add(strings.Repeat(".", 100))
	f.Add(`{"payload":"e30","signatures":[]}`)
	f.Add("")

	f.Fuzz(func(t *testing.T, header string) {
		r := request("POST")
		for _, h := range strings.Split(header, "\n") {
			r.Header.Add("DPoP", h)
		}
		p, err := e.v.Verify(t.Context(), r, tokenURL, "")
		if err == nil {
			if !ours[p.Thumbprint] || !strings.HasPrefix(p.JTI, "fuzz-seed-") || !p.IssuedAt.Equal(e.now) || p.HTM != "POST" {
				t.Fatalf("accepted a proof the test did not sign: %q → %+v", header, p)
			}
			return
		}
		var ee *errs.Error
		if !errors.As(err, &ee) || ee.Kind != errs.Unauthorized || (ee.Code != CodeInvalidProof && ee.Code != CodeUseNonce) {
			t.Fatalf("error %v is not a DPoP refusal", err)
		}
	})
}

// FuzzNormalizeHTU: normalising never panics, is idempotent, and yields an
// absolute http(s) URL without query or fragment.
func FuzzNormalizeHTU(f *testing.F) {
	for _, s := range []string{
		"https://as.example.com/token", "HTTPS://AS.example.com:443/a/../%7eb?x#y", "http://[::1]:80/./",
		"https://h/%2e%2E/x", "https://h/a/b/../../../c", "https://u@h/", "https://h:/", "//h/p",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := normalizeHTU(s)
		if err != nil {
			return
		}
		again, err := normalizeHTU(n)
		if err != nil || again != n {
			t.Fatalf("normalizeHTU(%q) = %q, but normalizeHTU of that = %q, %v", s, n, again, err)
		}
		u, err := url.Parse(n)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			t.Fatalf("normalizeHTU(%q) = %q: not an absolute URL without query and fragment (%v)", s, n, err)
		}
	})
}
