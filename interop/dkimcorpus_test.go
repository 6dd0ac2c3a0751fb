package interop

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
)

// signerKeys writes an RSA and an Ed25519 key for dkimpy's signer in dir
// and returns their files and the TXT records that publish them for
// domain (selectors "rsa" and "ed").
func signerKeys(t testing.TB, dir, domain string) (rsaKey, edKey string, records map[string]string) {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, edKey = filepath.Join(dir, "rsa.pem"), filepath.Join(dir, "ed.b64")
	if err := os.WriteFile(rsaKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), 0o600); err != nil {
		t.Fatal(err)
	}
	// dkimpy takes an Ed25519 key as the base64 of its 32-byte seed.
	if err := os.WriteFile(edKey, []byte(base64.StdEncoding.EncodeToString(priv.Seed())), 0o600); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return rsaKey, edKey, map[string]string{
		"rsa._domainkey." + domain: "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der),
		"ed._domainkey." + domain:  "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub),
	}
}

// TestOutsideDKIMSurvivesRoundTrip: each message of mimeconv's corpus
// (the shapes seen in the wild, broken ones included), DKIM-signed by an
// outside signer (dkimpy: rsa-sha256 and ed25519-sha256, relaxed), goes in
// by SMTP to a.test's mail exchanger and comes out by 'pullmail export
// --raw' as the same bytes, and dkimpy verifies the exported copy exactly
// as it verified the signed one. Pullmail's own verifier, in its
// Authentication-Results, agrees.
func TestOutsideDKIMSurvivesRoundTrip(t *testing.T) {
	python(t)
	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.InProcess, Domains: []string{"a.test"},
		Users: []string{"alice@a.test"}, SMTP: true})
	d := sb.Domain("a.test")
	alice, _ := sb.User("alice@a.test")
	keys := t.TempDir()
	rsaKey, edKey, records := signerKeys(t, keys, "signer.test")
	for name, txt := range records {
		sb.Directory.DNS.AddTXT(name, txt)
	}

	files, _ := filepath.Glob("../mimeconv/testdata/corpus/*.eml")
	if len(files) < 20 {
		t.Fatalf("corpus: %d files", len(files))
	}
	wire, signed, exported := t.TempDir(), t.TempDir(), t.TempDir()
	var inputs []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// Signed as the server will read it, line ends and all.
		p := filepath.Join(wire, filepath.Base(f))
		if err := os.WriteFile(p, wireForm(b), 0o644); err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, p)
	}
	var signs []struct {
		File  string
		Out   *string
		Error *string
	}
	runJSON(t, &signs, "dkimsign.py", append([]string{"signer.test", "rsa", rsaKey, "ed", edKey, signed}, inputs...)...)

	pool, err := tlsca.LoadPool(sb.CA)
	if err != nil {
		t.Fatal(err)
	}
	api, err := client.New(d.URL, alice.Token, sb.CA)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"PULLMAIL_SERVER": d.URL, "PULLMAIL_TOKEN": alice.Token, "PULLMAIL_CA": sb.CA}
	seen := map[string]bool{}
	var before, after []string
	for _, s := range signs {
		name := filepath.Base(s.File)
		if s.Out == nil {
			t.Logf("%s: dkimpy does not sign it: %s", name, *s.Error)
			continue
		}
		msg, err := os.ReadFile(*s.Out)
		if err != nil {
			t.Fatal(err)
		}
		c, err := smtp.DialStartTLS(d.SMTP, &tls.Config{RootCAs: pool, ServerName: "a.test"})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SendMail("bounce@signer.test", []string{"alice@a.test"}, bytes.NewReader(msg)); err != nil {
			t.Fatalf("%s: smtp: %v", name, err)
		}
		c.Close()
		l, err := api.List(context.Background(), mailbox.ListOptions{Folder: "inbox"})
		if err != nil {
			t.Fatal(err)
		}
		id := ""
		for _, m := range l.Messages {
			if !seen[m.ID] {
				id, seen[m.ID] = m.ID, true
			}
		}
		if id == "" {
			t.Fatalf("%s: no new message in the inbox", name)
		}
		out := filepath.Join(exported, name)
		pullmail(t, vars, "export", "--raw", id, "--out", out)
		got, _ := os.ReadFile(out)
		if !bytes.Equal(got, msg) {
			t.Errorf("%s: export --raw differs from what was sent:\n%s", name, diffAt(got, msg))
		}
		before, after = append(before, *s.Out), append(after, out)

		full, err := api.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if ar := string(full.Placeholder); strings.Count(ar, "dkim=pass") != 2 || !strings.Contains(ar, "header.d=signer.test") {
			t.Errorf("%s: Pullmail's verifier does not pass both signatures: %s", name, ar)
		}
	}
	if len(before) < len(files)-2 {
		t.Fatalf("dkimpy signed only %d of %d corpus messages", len(before), len(files))
	}
	vb, va := verifyDKIM(t, records, before...), verifyDKIM(t, records, after...)
	for i := range vb {
		name := filepath.Base(vb[i].File)
		if len(vb[i].Signatures) != 2 || len(va[i].Signatures) != 2 {
			t.Errorf("%s: %d signatures before, %d after, want 2", name, len(vb[i].Signatures), len(va[i].Signatures))
			continue
		}
		for j := range vb[i].Signatures {
			b, a := vb[i].Signatures[j], va[i].Signatures[j]
			if !b.OK {
				t.Errorf("%s: dkimpy fails its own %s signature before any round trip", name, b.A)
			}
			if a.OK != b.OK {
				t.Errorf("%s: %s verifies %v before the round trip, %v after", name, a.A, b.OK, a.OK)
			}
		}
	}
	t.Logf("%d corpus messages signed by dkimpy, round-tripped and verified (rsa-sha256, ed25519-sha256)", len(after))
}
