package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// chainWorld signs chains a.test → b.test → c.test → d.test with a real key
// set per domain, and finds each domain's keys as discovery would.
type chainWorld struct {
	t    *testing.T
	now  time.Time
	sets map[string]*keys.Set
	msg  *placeholder.Message
}

func newChainWorld(t *testing.T) *chainWorld {
	w := &chainWorld{t: t, now: time.Unix(1_790_000_000, 0), sets: map[string]*keys.Set{}}
	for _, d := range []string{"a.test", "b.test", "c.test", "d.test", "evil.test"} {
		s, err := keys.Open(filepath.Join(t.TempDir(), d+".json"), keys.Options{MaxTokenLifetime: time.Hour,
			Clock: func() time.Time { return w.now }})
		if err != nil {
			t.Fatal(err)
		}
		w.sets[d] = s
	}
	m := placeholder.New("Alice <alice@a.test>", []string{"Bob <bob@b.test>"}, nil, nil, "Venice")
	leaf, _ := placeholder.NewLeaf(resource.IDOf([]byte("photo")), 5, "image/png", "attachment", "v.png")
	m.Parts = append(m.Parts, leaf)
	m.Header.SetString(placeholder.HMessageID, "<m1@a.test>")
	m.Header.SetString(placeholder.HDate, placeholder.FormatDate(w.now))
	m.Header.SetString(placeholder.HBodyDigest, placeholder.BodyDigest(m))
	rd, _ := placeholder.RecipientsDigest(m.Header)
	m.Header.SetString(placeholder.HRecipientsDigest, rd)
	w.msg = m
	return w
}

func (w *chainWorld) IssuerKeys(_ context.Context, domain string) (string, []byte, error) {
	s, ok := w.sets[domain]
	if !ok {
		return "", nil, errs.E(errs.NotFound, "not_found", "no domain %s", domain)
	}
	doc, err := json.Marshal(s.PublicJWKS())
	return "https://" + domain, doc, err
}

// sign makes an assertion of domain's AS (signer: whose key signs it).
func (w *chainWorld) sign(signer, iss, sub, aud string, hop int, path []string, prev string, h placeholder.Header, ehl []string) string {
	eht, err := placeholder.EHT(h, ehl)
	if err != nil {
		w.t.Fatal(err)
	}
	_, d, _ := cutAt(sub)
	a, err := w.sets[signer].Sign(TypAssertion, Claims{Claims: keys.Claims{Issuer: iss, Subject: sub,
		Audience: keys.Audience{aud}, AZP: "mta@" + d, Scope: ScopeInternetMail, ID: fmt.Sprint(hop, aud),
		IssuedAt: keys.NewNumericDate(w.now), Expiry: keys.NewNumericDate(w.now.Add(5 * time.Minute))},
		MessageID: "<m1@a.test>", EH: &EnvelopeBinding{EHT: eht, EHL: ehl}, Hop: hop, Path: path, Prev: prev})
	if err != nil {
		w.t.Fatal(err)
	}
	return a
}

func cutAt(addr string) (string, string, bool) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			return addr[:i], addr[i+1:], true
		}
	}
	return addr, "", false
}

// chain builds the valid chain alice@a.test → bob@b.test → carol@c.test →
// dave@d.test, newest first.
func (w *chainWorld) chain() []ChainElement {
	ehl := []string{placeholder.HMessageID, placeholder.HFrom, placeholder.HRecipientsDigest, placeholder.HBodyDigest}
	var h placeholder.Header
	for _, n := range ehl {
		h.Set(n, w.msg.Header.Get(n))
	}
	first := w.sign("a.test", "https://a.test", "alice@a.test", "b.test", 1, []string{"a.test"}, "", h, ehl)
	chain := []ChainElement{{Headers: mustJSON(w.t, h), Assertion: first}}
	hops := []struct{ from, to, domain string }{{"bob@b.test", "carol@c.test", "b.test"}, {"carol@c.test", "dave@d.test", "c.test"}}
	path := []string{"a.test"}
	for i, hp := range hops {
		prev := chain[0].Assertion
		var fh placeholder.Header
		fh.SetString(placeholder.HMessageID, "<m1@a.test>")
		fh.SetString(placeholder.HForwardedFrom, hp.from)
		fh.SetString(placeholder.HForwardedTo, hp.to)
		rd, _ := placeholder.ForwardRecipientsDigest(fh)
		fh.SetString(placeholder.HRecipientsDigest, rd)
		fh.SetString(placeholder.HJWTAssertionDigest, placeholder.JWTAssertionDigest(prev))
		fehl := []string{placeholder.HMessageID, placeholder.HForwardedFrom, placeholder.HRecipientsDigest,
			placeholder.HJWTAssertionDigest, placeholder.HForwardedTo}
		path = append(slices.Clone(path), hp.domain)
		_, aud, _ := cutAt(hp.to)
		a := w.sign(hp.domain, "https://"+hp.domain, hp.from, aud, i+2, path, placeholder.JWTAssertionDigest(prev), fh, fehl)
		chain = append([]ChainElement{{Headers: mustJSON(w.t, fh), Assertion: a}}, chain...)
	}
	return chain
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (w *chainWorld) check(final string) ChainCheck {
	return ChainCheck{Final: final, Placeholder: w.msg, Remote: w, Now: w.now}
}

func TestVerifyChain(t *testing.T) {
	w := newChainWorld(t)
	links, err := VerifyChain(context.Background(), w.chain(), w.check("d.test"))
	if err != nil {
		t.Fatalf("the valid chain: %v", err)
	}
	if len(links) != 3 || links[0].Domain != "c.test" || links[2].Domain != "a.test" {
		t.Fatalf("links: %+v", links)
	}
	// The origin's view: the chain starts with its own issuer.
	c := w.check("d.test")
	c.Origin, c.Domain, c.OwnIssuer, c.Own = "https://a.test", "a.test", "https://a.test", w.sets["a.test"]
	if _, err := VerifyChain(context.Background(), w.chain(), c); err != nil {
		t.Fatalf("at the origin: %v", err)
	}
}

// TestVerifyChainBroken: each way of breaking a chain has its own code.
func TestVerifyChainBroken(t *testing.T) {
	w := newChainWorld(t)
	tests := []struct {
		name   string
		mutate func(ch []ChainElement) ([]ChainElement, ChainCheck)
		code   string
	}{
		{"a link removed", func(ch []ChainElement) ([]ChainElement, ChainCheck) {
			return []ChainElement{ch[0], ch[2]}, w.check("d.test")
		}, CodeChainLinkMissing},
		{"two links swapped", func(ch []ChainElement) ([]ChainElement, ChainCheck) {
			return []ChainElement{ch[1], ch[0], ch[2]}, w.check("d.test")
		}, CodeChainOrder},
		{"a hop's Forwarded-To altered", func(ch []ChainElement) ([]ChainElement, ChainCheck) {
			h, _ := placeholder.ParseHeader(ch[1].Headers, placeholder.Limits{})
			h.SetString(placeholder.HForwardedTo, "mallory@c.test")
			ch[1].Headers = mustJSON(t, h)
			return ch, w.check("d.test")
		}, "eht_mismatch"},
		{"the Body-Digest altered", func(ch []ChainElement) ([]ChainElement, ChainCheck) {
			c := w.check("d.test")
			m := w.msg.Clone()
			m.Header.SetString(placeholder.HBodyDigest, "<"+string(resource.IDOf([]byte("x")))+">")
			c.Placeholder = m
			return ch, c
		}, "eht_mismatch"},
		{"a resource not in the original body", func(ch []ChainElement) ([]ChainElement, ChainCheck) {
			c := w.check("d.test")
			m := w.msg.Clone()
			leaf, _ := placeholder.NewLeaf(resource.IDOf([]byte("secret")), 6, "text/plain", "attachment", "s.txt")
			m.Parts = append(m.Parts, leaf)
			c.Placeholder = m
			return ch, c
		}, placeholder.CodeDigestMismatch},
		{"a hop's assertion from the wrong AS", func(ch []ChainElement) ([]ChainElement, ChainCheck) {
			// c.test's hop re-signed by evil.test's key, claiming c.test's issuer.
			h, _ := placeholder.ParseHeader(ch[0].Headers, placeholder.Limits{})
			ch[0].Assertion = w.sign("evil.test", "https://c.test", "carol@c.test", "d.test", 3,
				[]string{"a.test", "b.test", "c.test"}, placeholder.JWTAssertionDigest(ch[1].Assertion), h,
				[]string{placeholder.HMessageID, placeholder.HForwardedFrom, placeholder.HRecipientsDigest,
					placeholder.HJWTAssertionDigest, placeholder.HForwardedTo})
			return ch, w.check("d.test")
		}, "bad_signature"},
		{"an issuer that is not the domain's", func(ch []ChainElement) ([]ChainElement, ChainCheck) {
			h, _ := placeholder.ParseHeader(ch[0].Headers, placeholder.Limits{})
			ch[0].Assertion = w.sign("evil.test", "https://evil.test", "carol@c.test", "d.test", 3,
				[]string{"a.test", "b.test", "c.test"}, placeholder.JWTAssertionDigest(ch[1].Assertion), h,
				[]string{placeholder.HMessageID, placeholder.HForwardedFrom, placeholder.HRecipientsDigest,
					placeholder.HJWTAssertionDigest, placeholder.HForwardedTo})
			return ch, w.check("d.test")
		}, "issuer_mismatch"},
		{"replayed to a different final recipient", func(ch []ChainElement) ([]ChainElement, ChainCheck) {
			return ch, w.check("evil.test")
		}, "wrong_audience"},
		{"a forwarder who was not a recipient", func(ch []ChainElement) ([]ChainElement, ChainCheck) {
			c := w.check("d.test")
			m := w.msg.Clone()
			m.Header.SetString(placeholder.HTo, "someone@b.test")
			rd, _ := placeholder.RecipientsDigest(m.Header)
			m.Header.SetString(placeholder.HRecipientsDigest, rd)
			c.Placeholder = m
			return ch, c
		}, "eht_mismatch"}, // the author's hop signs the Recipients-Digest: no one can rewrite To
		{"the chain too long", func(ch []ChainElement) ([]ChainElement, ChainCheck) {
			c := w.check("d.test")
			c.MaxHops = 2
			return ch, c
		}, CodeChainTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, c := tt.mutate(w.chain())
			_, err := VerifyChain(context.Background(), ch, c)
			if errs.CodeOf(err) != tt.code {
				t.Fatalf("got %v (code %q), want %s", err, errs.CodeOf(err), tt.code)
			}
		})
	}
}

// TestVerifyChainNotARecipient: a forwarder must have received the hop
// before; a hop that names itself a forwarder of a message it never got
// is refused even when every signature is good.
func TestVerifyChainNotARecipient(t *testing.T) {
	w := newChainWorld(t)
	ch := w.chain()
	// Rebuild hop 3 as sent by c.test's user mallory, who was not in
	// hop 2's Forwarded-To.
	var h placeholder.Header
	h.SetString(placeholder.HMessageID, "<m1@a.test>")
	h.SetString(placeholder.HForwardedFrom, "mallory@c.test")
	h.SetString(placeholder.HForwardedTo, "dave@d.test")
	rd, _ := placeholder.ForwardRecipientsDigest(h)
	h.SetString(placeholder.HRecipientsDigest, rd)
	prev := placeholder.JWTAssertionDigest(ch[1].Assertion)
	h.SetString(placeholder.HJWTAssertionDigest, prev)
	ehl := []string{placeholder.HMessageID, placeholder.HForwardedFrom, placeholder.HRecipientsDigest,
		placeholder.HJWTAssertionDigest, placeholder.HForwardedTo}
	ch[0] = ChainElement{Headers: mustJSON(t, h), Assertion: w.sign("c.test", "https://c.test", "mallory@c.test", "d.test", 3,
		[]string{"a.test", "b.test", "c.test"}, prev, h, ehl)}
	if _, err := VerifyChain(context.Background(), ch, w.check("d.test")); errs.CodeOf(err) != CodeNotARecipient {
		t.Fatalf("got %v, want %s", err, CodeNotARecipient)
	}
}

// FuzzVerifyChain: whatever the bytes, VerifyChain answers without
// panicking, and never accepts a chain whose signatures it cannot check.
func FuzzVerifyChain(f *testing.F) {
	f.Add([]byte(`[{"headers":{},"jwt-assertion":"a.b.c"}]`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ch []ChainElement
		if json.Unmarshal(data, &ch) != nil {
			return
		}
		if _, err := VerifyChain(context.Background(), ch, ChainCheck{Final: "d.test", Now: time.Unix(1_790_000_000, 0)}); err == nil {
			t.Fatalf("accepted %q without any keys", data)
		}
	})
}

// chainVector is testdata/chain-3hops.json: a real chain a.test → b.test →
// c.test → d.test with the public keys that verify it (docs/PROTOCOL.md
// §12.5). PULLMAIL_WRITE_VECTORS=1 writes a new one.
type chainVector struct {
	Now         int64                      `json:"now"`
	JWKS        map[string]json.RawMessage `json:"jwks"`
	Placeholder json.RawMessage            `json:"placeholder"`
	Chain       []ChainElement             `json:"chain"`
	Digests     []string                   `json:"assertion_digests"` // of each hop's assertion, newest first
}

type vectorKeys map[string]json.RawMessage

func (v vectorKeys) IssuerKeys(_ context.Context, domain string) (string, []byte, error) {
	doc, ok := v[domain]
	if !ok {
		return "", nil, errs.E(errs.NotFound, "not_found", "no domain %s", domain)
	}
	return "https://" + domain, doc, nil
}

func TestChainVector(t *testing.T) {
	path := filepath.Join("testdata", "chain-3hops.json")
	if os.Getenv("PULLMAIL_WRITE_VECTORS") == "1" {
		w := newChainWorld(t)
		v := chainVector{Now: w.now.Unix(), JWKS: map[string]json.RawMessage{}, Placeholder: w.msg.Canonical(), Chain: w.chain()}
		for _, d := range []string{"a.test", "b.test", "c.test"} {
			_, doc, _ := w.IssuerKeys(context.Background(), d)
			v.JWKS[d] = doc
		}
		for _, el := range v.Chain {
			v.Digests = append(v.Digests, placeholder.JWTAssertionDigest(el.Assertion))
		}
		b, _ := json.MarshalIndent(v, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v chainVector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	m, err := placeholder.Parse(v.Placeholder, placeholder.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	links, err := VerifyChain(context.Background(), v.Chain, ChainCheck{Final: "d.test", Placeholder: m,
		Remote: vectorKeys(v.JWKS), Now: time.Unix(v.Now, 0)})
	if err != nil {
		t.Fatalf("the vector does not verify: %v", err)
	}
	for i, el := range v.Chain {
		if got := placeholder.JWTAssertionDigest(el.Assertion); got != v.Digests[i] {
			t.Errorf("hop %d: JWT-Assertion-Digest %s, vector says %s", len(v.Chain)-i, got, v.Digests[i])
		}
		if i+1 < len(v.Chain) && links[i].Claims.Prev != v.Digests[i+1] {
			t.Errorf("hop %d: prev %s, want the digest of hop %d", len(v.Chain)-i, links[i].Claims.Prev, len(v.Chain)-i-1)
		}
	}
	// Any change to the vector's bytes breaks it: one flipped character
	// in the middle hop's headers.
	broken := slices.Clone(v.Chain)
	broken[1].Headers = json.RawMessage(strings.Replace(string(broken[1].Headers), "carol", "carel", 1))
	if _, err := VerifyChain(context.Background(), broken, ChainCheck{Final: "d.test", Placeholder: m,
		Remote: vectorKeys(v.JWKS), Now: time.Unix(v.Now, 0)}); err == nil {
		t.Fatal("an altered vector still verifies")
	}
}
