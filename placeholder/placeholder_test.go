package placeholder

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/resource"
)

func TestJCSString(t *testing.T) {
	// RFC 8785 §3.2.2.2's example string, and our own edge cases.
	for _, tc := range []struct{ in, want string }{
		{"€$\x0f\nA'B\"\\\\\"/", `"€$\u000f\nA'B\"\\\\\"/"`},
		{"\b\t\n\f\r\x00\x1f", `"\b\t\n\f\r\u0000\u001f"`},
		{"<>&\u2028\u2029\x7f😀", "\"<>&\u2028\u2029\x7f😀\""},
		{"bad \xff utf-8", "\"bad \uFFFD utf-8\""},
	} {
		if got := string(appendString(nil, tc.in)); got != tc.want {
			t.Errorf("appendString(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestJCSKeyOrder(t *testing.T) {
	// RFC 8785 §3.2.3: members sorted by UTF-16 code units, so U+1F600
	// (D83D DE00) sorts before U+FB33.
	obj := map[string]any{"€": "", "\r": "", "\ufb33": "", "1": "", "😀": "", "\u0080": "", "ö": ""}
	want := "{\"\\r\":\"\",\"1\":\"\",\"\u0080\":\"\",\"ö\":\"\",\"€\":\"\",\"😀\":\"\",\"\ufb33\":\"\"}"
	if got := string(appendAny(nil, obj)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	var h Header
	for k := range obj {
		h.SetString("X-"+k, "")
	}
	if !slices.IsSortedFunc(h.Names(), compareUTF16) {
		t.Errorf("Header names not in UTF-16 order: %q", h.Names())
	}
}

func TestValueForms(t *testing.T) {
	s, l := Single("a"), List("a")
	if s.Equal(l) || s.IsList() || !l.IsList() {
		t.Fatalf("string and one-element list must differ: %v %v", s, l)
	}
	for _, tc := range []struct {
		v    Value
		json string
	}{
		{Single("a<b>"), `"a<b>"`},
		{List("a", "b"), `["a","b"]`},
	} {
		b, err := json.Marshal(tc.v)
		if err != nil || string(b) != strings.NewReplacer("<", `\u003c`, ">", `\u003e`).Replace(tc.json) {
			t.Errorf("Marshal(%v) = %s, %v", tc.v, b, err)
		}
		var back Value
		if err := json.Unmarshal([]byte(tc.json), &back); err != nil || !back.Equal(tc.v) {
			t.Errorf("Unmarshal(%s) = %v, %v", tc.json, back, err)
		}
	}
	for _, bad := range []string{`1`, `null`, `[]`, `[1]`, `{}`, `["a",null]`} {
		var v Value
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("Unmarshal(%s) accepted", bad)
		}
	}
	if got := List("a", "b").String(); got != "a, b" {
		t.Errorf("String() = %q", got)
	}
}

func TestHeader(t *testing.T) {
	var h Header
	h.SetString("content-type", "multipart/mixed")
	h.SetString("X-Foo", "1")
	h.SetString("x-foo", "2")
	h.Set("To", List("a@example.com", "b@example.com"))
	if got, want := h.Names(), []string{"Content-Type", "To", "x-foo"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	if h.Get("X-FOO").String() != "2" || !h.Get("to").IsList() {
		t.Errorf("lookups ignore case: %v %v", h.Get("X-FOO"), h.Get("to"))
	}
	h.Del("TO")
	h.Set("x-foo", Value{})
	if h.Len() != 1 || h.Has("To") || h.Has("X-Foo") {
		t.Errorf("after deletes: %q", h.Names())
	}
	if _, ok := Registered("MESSAGE-id"); !ok {
		t.Error("Message-ID is registered")
	}
}

func TestNormalizeAddress(t *testing.T) {
	for _, tc := range []struct{ in, want, code string }{
		{"alice@example.com", "alice@example.com", ""},
		{"Alice <Alice.Smith@Example.COM>", "Alice.Smith@example.com", ""},
		{`"Smith, A." <a@EXAMPLE.com>`, "a@example.com", ""},
		{`"john doe"@example.org`, `"john doe"@example.org`, ""},
		{`"john"@example.org`, `john@example.org`, ""},
		{"=?utf-8?q?Z=C3=B6e?= <zoe@example.net>", "zoe@example.net", ""},
		{"bob@exämple.net", "", CodeBadAddress},
		{"bob@[192.0.2.1]", "", CodeBadAddress},
		{"bob@-example.net", "", CodeBadAddress},
		{"bob", "", CodeBadAddress},
		{"", "", CodeBadAddress},
	} {
		got, err := NormalizeAddress(tc.in)
		if tc.code != "" {
			if errs.CodeOf(err) != tc.code {
				t.Errorf("NormalizeAddress(%q) = %q, %v; want code %s", tc.in, got, err, tc.code)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeAddress(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestRecipientsDigestEmpty(t *testing.T) {
	// {"bcc":[],"cc":[],"to":[]} and {"forwarded-to":[]}, hashed by hand.
	var h Header
	rd, err := RecipientsDigest(h)
	if err != nil || rd != "<"+b64sum([]byte(`{"bcc":[],"cc":[],"to":[]}`))+">" {
		t.Errorf("RecipientsDigest(empty) = %s, %v", rd, err)
	}
	fd, err := ForwardRecipientsDigest(h)
	if err != nil || fd != "<"+b64sum([]byte(`{"forwarded-to":[]}`))+">" {
		t.Errorf("ForwardRecipientsDigest(empty) = %s, %v", fd, err)
	}
	h.SetString(HTo, "nobody")
	if _, err := RecipientsDigest(h); errs.CodeOf(err) != CodeBadAddress {
		t.Errorf("bad To: %v", err)
	}
}

// Every change that SECURITY.md lists for envelope headers changes the digest.
func TestDigestsSeeChanges(t *testing.T) {
	var h Header
	h.SetString(HMessageID, "<1@example.com>")
	h.SetString(HFrom, "alice@example.com")
	h.SetString(HTo, "bob@example.net")
	rd, _ := RecipientsDigest(h)
	h.SetString(HRecipientsDigest, rd)
	h.SetString(HBodyDigest, "<"+string(resource.EmptyID)+">")
	ehl := FirstHop.RequiredEHL()
	base, err := EHT(h, ehl)
	if err != nil {
		t.Fatal(err)
	}
	changed := func(name string, f func(h *Header, ehl []string) []string) {
		t.Helper()
		h2 := h.Clone()
		e2 := f(&h2, slices.Clone(ehl))
		got, err := EHT(h2, e2)
		if err == nil && got == base {
			t.Errorf("%s: eht unchanged", name)
		}
	}
	changed("reordered ehl", func(h *Header, e []string) []string { e[0], e[1] = e[1], e[0]; return e })
	changed("duplicated name", func(h *Header, e []string) []string { return append(e, e[0]) })
	changed("trailing space", func(h *Header, e []string) []string { h.SetString(HFrom, "alice@example.com "); return e })
	changed("case change", func(h *Header, e []string) []string { h.SetString(HFrom, "Alice@example.com"); return e })
	changed("list form", func(h *Header, e []string) []string { h.Set(HFrom, List("alice@example.com")); return e })
	changed("NFD", func(h *Header, e []string) []string { h.SetString(HMessageID, "<1@exa\u0301mple.com>"); return e })

	h2 := h.Clone()
	h2.SetString(HTo, "bob@example.net, eve@example.org")
	if rd2, _ := RecipientsDigest(h2); rd2 == rd {
		t.Error("an added recipient left Recipients-Digest unchanged")
	}
	h2.SetString(HTo, "bob@example.net")
	h2.SetString(HBcc, "bob@example.net")
	if rd2, _ := RecipientsDigest(h2); rd2 == rd {
		t.Error("moving a copy to Bcc left Recipients-Digest unchanged")
	}
}

func TestEHTErrors(t *testing.T) {
	var h Header
	h.SetString(HMessageID, "<1@example.com>")
	h.SetString("X-Custom", "v")
	for _, ehl := range [][]string{nil, {"From"}, {"Message-ID", "Message-ID"}, {"message-id"}, {"x-custom"}} {
		if _, err := EHT(h, ehl); errs.CodeOf(err) != CodeBadEHL {
			t.Errorf("EHT(%q) = %v, want %s", ehl, err, CodeBadEHL)
		}
	}
	want := b64sum([]byte(`[["X-Custom","v"],["Message-ID","<1@example.com>"]]`))
	if got, err := EHT(h, []string{"X-Custom", "Message-ID"}); err != nil || got != want {
		t.Errorf("EHT = %s, %v; want %s", got, err, want)
	}
	if err := CheckEHL([]string{"Body-Digest", "From", "Message-ID", "Recipients-Digest", "Subject"}, FirstHop); err != nil {
		t.Errorf("a superset in any order: %v", err)
	}
	for _, tc := range []struct {
		ehl []string
		hop Hop
	}{
		{[]string{"Message-ID", "From", "Recipients-Digest"}, FirstHop},
		{FirstHop.RequiredEHL(), ForwardHop},
		{append(ForwardHop.RequiredEHL(), "Message-ID"), ForwardHop},
	} {
		if err := CheckEHL(tc.ehl, tc.hop); errs.CodeOf(err) != CodeBadEHL {
			t.Errorf("CheckEHL(%q, %d) = %v", tc.ehl, tc.hop, err)
		}
	}
}

func TestJWTAssertionDigest(t *testing.T) {
	// SHA-256("abc") = ba7816bf..., in base64url.
	if got := JWTAssertionDigest("abc"); got != "<ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0>" {
		t.Errorf("JWTAssertionDigest(abc) = %s", got)
	}
}

func TestBuild(t *testing.T) {
	m := New("Alice <alice@example.com>", []string{"Bob <bob@example.net>"}, nil, []string{"carol@example.org"}, "Hello")
	text, err := NewLeaf(resource.IDOf([]byte("hi\n")), 3, "text/plain; charset=UTF-8", "inline", "")
	if err != nil {
		t.Fatal(err)
	}
	html, err := NewLeaf(resource.IDOf([]byte("<p>hi</p>")), 9, "text/html; charset=UTF-8", "inline", "")
	if err != nil {
		t.Fatal(err)
	}
	att, err := NewLeaf(resource.EmptyID, 0, "application/octet-stream", "attachment", "Grüße €.txt")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(Limits{}); errs.CodeOf(err) != CodeMissingMember {
		t.Errorf("a message without parts: %v", err)
	}
	m.Parts = []Part{Alternative(text, html), att}
	if err := m.Validate(Limits{}); err != nil {
		t.Fatalf("Validate: %v\n%s", err, m.Canonical())
	}
	back, err := Parse(m.Canonical(), Limits{})
	if err != nil || !back.Equal(m) {
		t.Fatalf("Parse(Canonical) = %v\n%s", err, m.Canonical())
	}
	leaves, err := back.Leaves()
	if err != nil {
		t.Fatal(err)
	}
	want := []Leaf{
		{ID: resource.IDOf([]byte("hi\n")), Size: 3, ContentType: "text/plain; charset=UTF-8", Disposition: "inline"},
		{ID: resource.IDOf([]byte("<p>hi</p>")), Size: 9, ContentType: "text/html; charset=UTF-8", Disposition: "inline"},
		{ID: resource.EmptyID, Size: 0, ContentType: "application/octet-stream", Disposition: "attachment", Filename: "Grüße €.txt"},
	}
	if !slices.Equal(leaves, want) {
		t.Errorf("Leaves() = %+v\nwant %+v", leaves, want)
	}
	if m.IsSent() {
		t.Error("a new message is a draft")
	}
	m.Header.SetString(HDate, FormatDate(mustTime(t)))
	m.Header.SetString(HMessageID, NewMessageID("Example.com"))
	if err := m.Validate(Limits{}); err != nil || !m.IsSent() {
		t.Errorf("with Date and Message-ID: %v; sent %v", err, m.IsSent())
	}
	if _, err := NewLeaf(resource.EmptyID, 1, "text/plain", "", ""); errs.CodeOf(err) != CodeBadContentType {
		t.Errorf("empty resource with size 1: %v", err)
	}
	if _, err := NewLeaf(resource.EmptyID, 0, "text/plain", "form-data", ""); errs.CodeOf(err) != CodeBadContentDisposition {
		t.Errorf("form-data disposition: %v", err)
	}
}

func TestServerOwned(t *testing.T) {
	var h Header
	h.SetString(HFrom, "alice@example.com")
	if err := CheckClientHeader(h); err != nil {
		t.Errorf("clean header: %v", err)
	}
	h.SetString("date", "Sun, 22 Dec 2024 19:49:35 +0000")
	h.SetString(HThreadID, "<t@example.com>")
	if got := ClientSetServerOwned(h); !slices.Equal(got, []string{HDate, HThreadID}) {
		t.Errorf("ClientSetServerOwned = %q", got)
	}
	if err := CheckClientHeader(h); errs.CodeOf(err) != CodeServerOwnedHeader || !errs.Is(err, errs.Invalid) {
		t.Errorf("CheckClientHeader = %v", err)
	}
}

func TestVerifyDigests(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/03-seed004-fig2-sent.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	m, err := Parse(v.Message, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyDigests(m); err != nil {
		t.Fatalf("VerifyDigests: %v", err)
	}
	m2 := m.Clone()
	m2.Header.SetString(HTo, "Bob <bob@example.net>, eve@example.org")
	if err := VerifyDigests(m2); errs.CodeOf(err) != CodeDigestMismatch {
		t.Errorf("added recipient: %v", err)
	}
	m3 := m.Clone()
	m3.Parts = m3.Parts[:1]
	if err := VerifyDigests(m3); errs.CodeOf(err) != CodeDigestMismatch {
		t.Errorf("dropped part: %v", err)
	}
	if !m.Equal(m.Clone()) || m.Equal(m3) {
		t.Error("Equal/Clone")
	}
}

func TestDefaultLimits(t *testing.T) {
	nest := func(n int) *Message {
		p, _ := NewLeaf(resource.EmptyID, 0, "text/plain", "", "")
		for range n {
			p = Alternative(p, p)
		}
		m := New("alice@example.com", nil, nil, nil, "")
		m.Parts = []Part{p}
		return m
	}
	// depth 16 accepted (leaf at depth 16), 17 refused; 2^9 leaves + 2^9-1 multiparts = 1023 parts.
	for _, tc := range []struct {
		m    *Message
		code string
	}{
		{nest(8), ""},
		{nest(9), CodeTooManyParts},
	} {
		_, err := Parse(tc.m.Canonical(), Limits{})
		if errs.CodeOf(err) != tc.code && !(tc.code == "" && err == nil) {
			t.Errorf("got %v, want %q", err, tc.code)
		}
		if err2 := tc.m.Validate(Limits{}); errs.CodeOf(err2) != errs.CodeOf(err) && !(err == nil && err2 == nil) {
			t.Errorf("Validate and Parse disagree: %v / %v", err2, err)
		}
	}
	deep := func(n int) *Message {
		p, _ := NewLeaf(resource.EmptyID, 0, "text/plain", "", "")
		for range n {
			p = Part{Header: New("", nil, nil, nil, "").Header, Parts: []Part{p}}
			p.Header.Del(HFrom)
		}
		m := New("alice@example.com", nil, nil, nil, "")
		m.Parts = []Part{p}
		return m
	}
	if _, err := Parse(deep(15).Canonical(), Limits{}); err != nil {
		t.Errorf("depth 16: %v", err)
	}
	if _, err := Parse(deep(16).Canonical(), Limits{}); errs.CodeOf(err) != CodeTooDeep {
		t.Errorf("depth 17: %v", err)
	}
	if err := deep(16).Validate(Limits{}); errs.CodeOf(err) != CodeTooDeep {
		t.Errorf("Validate depth 17: %v", err)
	}
	big := New("alice@example.com", nil, nil, nil, "")
	p, _ := NewLeaf(resource.EmptyID, 0, "text/plain", "", "")
	for i := range 60 {
		p.Header.SetString("X-Pad-"+string(rune('A'+i/26))+string(rune('a'+i%26)), strings.Repeat("x", 16<<10-1))
	}
	big.Parts = []Part{p, p}
	if _, err := Parse(big.Canonical(), Limits{}); errs.CodeOf(err) != CodeDocumentTooLarge {
		t.Errorf("over 1 MiB: %v", err)
	}
	if err := big.Validate(Limits{}); errs.CodeOf(err) != CodeDocumentTooLarge {
		t.Errorf("Validate over 1 MiB: %v", err)
	}
	big.Parts = big.Parts[:1]
	if _, err := Parse(big.Canonical(), Limits{}); err != nil {
		t.Errorf("under 1 MiB, 60 headers of 16 KiB-1: %v", err)
	}
}

func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("testdata/valid/05-seed000-appendix-a.json")
	if err != nil {
		b.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(data, &v); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(v.Message)))
	for b.Loop() {
		if _, err := Parse(v.Message, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCanonicalAndDigest(b *testing.B) {
	data, _ := os.ReadFile("testdata/valid/05-seed000-appendix-a.json")
	var v vector
	if err := json.Unmarshal(data, &v); err != nil {
		b.Fatal(err)
	}
	m, err := Parse(v.Message, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		_ = m.Canonical()
		_ = BodyDigest(m)
	}
}

func mustTime(t *testing.T) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, "2024-12-22T20:49:35+01:00")
	if err != nil {
		t.Fatal(err)
	}
	return tm
}
