package placeholder

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/resource"
)

var update = flag.Bool("update", false, "rewrite the expected values of testdata/valid/*.json")

// vectorResource states the plain bytes of one External Resource: either text,
// or pattern repeated and cut to size bytes.
type vectorResource struct {
	Text    *string `json:"text,omitempty"`
	Pattern string  `json:"pattern,omitempty"`
	Size    int64   `json:"size,omitempty"`
}

func (r vectorResource) bytes() []byte {
	if r.Text != nil {
		return []byte(*r.Text)
	}
	b := bytes.Repeat([]byte(r.Pattern), int(r.Size)/len(r.Pattern)+1)
	return b[:r.Size]
}

type vectorExpected struct {
	Canonical          string `json:"canonical"`
	BodyDigest         string `json:"body_digest,omitempty"`
	RecipientsDigest   string `json:"recipients_digest,omitempty"`
	EHT                string `json:"eht,omitempty"`
	JWTAssertionDigest string `json:"jwt_assertion_digest,omitempty"`
}

// vector is one file of testdata/valid: a message (or a lone hop header block)
// and what must be computed from it.
type vector struct {
	Description string           `json:"description"`
	Resources   []vectorResource `json:"resources,omitempty"` // the leaves' resources, in Leaves order
	Message     json.RawMessage  `json:"message,omitempty"`
	Headers     json.RawMessage  `json:"headers,omitempty"`
	Hop         string           `json:"hop,omitempty"` // "first" (default) or "forward"
	EHL         []string         `json:"ehl,omitempty"`
	JWT         string           `json:"jwt,omitempty"`
	Expected    vectorExpected   `json:"expected"`
}

func (v *vector) compute(t *testing.T) vectorExpected {
	t.Helper()
	var got vectorExpected
	hop := FirstHop
	if v.Hop == "forward" {
		hop = ForwardHop
	}
	var h Header
	switch {
	case v.Message != nil:
		m, err := Parse(v.Message, DefaultLimits())
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		h = m.Header
		got.Canonical = string(m.Canonical())
		got.BodyDigest = BodyDigest(m)
		if err := VerifyDigests(m); err != nil {
			t.Errorf("VerifyDigests: %v", err)
		}
		leaves, err := m.Leaves()
		if err != nil {
			t.Fatalf("Leaves: %v", err)
		}
		if len(leaves) != len(v.Resources) {
			t.Fatalf("%d leaves, %d resources stated", len(leaves), len(v.Resources))
		}
		for i, l := range leaves {
			b := v.Resources[i].bytes()
			if l.ID != resource.IDOf(b) || l.Size != int64(len(b)) {
				t.Errorf("leaf %d: Content-ID %s size %d; the stated bytes give %s size %d", i, l.ID, l.Size, resource.IDOf(b), len(b))
			}
		}
	case v.Headers != nil:
		var err error
		if h, err = ParseHeader(v.Headers, DefaultLimits()); err != nil {
			t.Fatalf("ParseHeader: %v", err)
		}
		got.Canonical = string(appendHeader(nil, h))
	default:
		t.Fatal("vector has neither message nor headers")
	}
	var err error
	if hop == ForwardHop {
		got.RecipientsDigest, err = ForwardRecipientsDigest(h)
	} else {
		got.RecipientsDigest, err = RecipientsDigest(h)
	}
	if err != nil {
		t.Fatalf("recipients digest: %v", err)
	}
	if v.EHL != nil {
		if err := CheckEHL(v.EHL, hop); err != nil {
			t.Errorf("CheckEHL: %v", err)
		}
		if got.EHT, err = EHT(h, v.EHL); err != nil {
			t.Fatalf("EHT: %v", err)
		}
	}
	if v.JWT != "" {
		got.JWTAssertionDigest = JWTAssertionDigest(v.JWT)
	}
	return got
}

func TestValidVectors(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var v vector
			if err := json.Unmarshal(data, &v); err != nil {
				t.Fatal(err)
			}
			got := v.compute(t)
			if *update {
				v.Expected = got
				var buf bytes.Buffer
				enc := json.NewEncoder(&buf)
				enc.SetEscapeHTML(false)
				enc.SetIndent("", "  ")
				if err := enc.Encode(v); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != v.Expected {
				t.Errorf("computed\n%+v\nwant\n%+v\n(run go test -update after checking the change by hand)", got, v.Expected)
			}
			// The canonical form is a fixed point and parses back to the same message.
			if v.Message != nil {
				m, err := Parse([]byte(got.Canonical), DefaultLimits())
				if err != nil {
					t.Fatalf("Parse(canonical): %v", err)
				}
				if c := string(m.Canonical()); c != got.Canonical {
					t.Errorf("canonical form is not idempotent:\n%s\n%s", c, got.Canonical)
				}
			}
		})
	}
}

// TestHandDerivedDigest recomputes one vector's digests from literal bytes
// with nothing but crypto/sha256 and encoding/base64, so that the committed
// vectors do not only agree with the code that wrote them.
func TestHandDerivedDigest(t *testing.T) {
	var v vector
	data, err := os.ReadFile("testdata/valid/01-minimal.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	b64 := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return base64.RawURLEncoding.EncodeToString(sum[:])
	}
	// The one leaf references the empty resource, whose ID is well known.
	if b64("") != string(resource.EmptyID) {
		t.Fatalf("SHA-256 of nothing: %s", b64(""))
	}
	parts := `[{"headers":{"Content-Disposition":"inline","Content-ID":"<47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU>",` +
		`"Content-Type":["message/external-body; access-type=\"x-content-addressed-uri\"; hash-algorithm=\"sha256\"; size=\"0\"","text/plain; charset=UTF-8"]}}]`
	recipients := `{"bcc":[],"cc":[],"to":["bob@example.net"]}`
	eht := `[["Message-ID","<1@example.com>"],["From","alice@example.com"],["Recipients-Digest","<` + b64(recipients) + `>"],["Body-Digest","<` + b64(parts) + `>"]]`
	canonical := `{"headers":{"Body-Digest":"<` + b64(parts) + `>","Content-Type":"multipart/mixed","Date":"Sun, 22 Dec 2024 19:49:35 +0000",` +
		`"From":"alice@example.com","Message-ID":"<1@example.com>","Recipients-Digest":"<` + b64(recipients) + `>","To":"Bob <bob@EXAMPLE.net>"},"parts":` + parts + `}`
	want := vectorExpected{
		Canonical:        canonical,
		BodyDigest:       "<" + b64(parts) + ">",
		RecipientsDigest: "<" + b64(recipients) + ">",
		EHT:              b64(eht),
	}
	if v.Expected != want {
		t.Errorf("committed vector\n%+v\nhand-derived\n%+v", v.Expected, want)
	}
	if got := v.compute(t); got != want {
		t.Errorf("computed\n%+v\nhand-derived\n%+v", got, want)
	}
}

// invalidVector is one entry of testdata/invalid.json: a document and the
// code that Parse must refuse it with.
type invalidVector struct {
	Name      string  `json:"name"`
	Code      string  `json:"code"`
	Doc       *string `json:"doc,omitempty"`
	DocBase64 string  `json:"doc_base64,omitempty"` // for bytes that a JSON string cannot hold
	Limits    Limits  `json:"limits,omitzero"`
}

func TestInvalidVectors(t *testing.T) {
	data, err := os.ReadFile("testdata/invalid.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []invalidVector
	if err := json.Unmarshal(data, &vs); err != nil {
		t.Fatal(err)
	}
	codes := map[string]bool{}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			doc := []byte(nil)
			if v.Doc != nil {
				doc = []byte(*v.Doc)
			} else if doc, err = base64.StdEncoding.DecodeString(v.DocBase64); err != nil {
				t.Fatal(err)
			}
			m, err := Parse(doc, v.Limits)
			if err == nil {
				t.Fatalf("accepted: %s", m.Canonical())
			}
			if !errs.Is(err, errs.Invalid) || errs.CodeOf(err) != v.Code {
				t.Errorf("got %v (kind %v), want code %s", err, errs.KindOf(err), v.Code)
			}
			codes[v.Code] = true
		})
	}
	// Every code that Parse can give has at least one vector.
	for _, c := range []string{CodeMalformedJSON, CodeDocumentTooLarge, CodeWrongType, CodeUnknownMember,
		CodeMissingMember, CodeDuplicateKey, CodeDuplicateHeader, CodeBadHeaderName, CodeBadHeaderValue,
		CodeHeaderTooLarge, CodeTooManyHeaders, CodeTooDeep, CodeTooManyParts, CodeEmptyParts, CodeBadContentType,
		CodeBadContentID, CodeBadContentDisposition, CodeBadAddress} {
		if !codes[c] {
			t.Errorf("no invalid vector for code %s", c)
		}
	}
}

// TestProtocolListsCodes keeps docs/PROTOCOL.md §7 and the code constants
// in step.
func TestProtocolListsCodes(t *testing.T) {
	doc, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{CodeMalformedJSON, CodeDocumentTooLarge, CodeWrongType, CodeUnknownMember,
		CodeMissingMember, CodeDuplicateKey, CodeDuplicateHeader, CodeBadHeaderName, CodeBadHeaderValue,
		CodeHeaderTooLarge, CodeTooManyHeaders, CodeTooDeep, CodeTooManyParts, CodeEmptyParts, CodeBadContentType,
		CodeBadContentID, CodeBadContentDisposition, CodeBadAddress, CodeBadEHL, CodeDigestMismatch,
		CodeServerOwnedHeader} {
		if !strings.Contains(string(doc), "`"+c+"`") {
			t.Errorf("docs/PROTOCOL.md does not list `%s`", c)
		}
	}
}
