package mta

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pullmail/pullmail/atomicfile"
)

// The DKIM keys of a data directory (pullmail dkim): one Ed25519 key
// (RFC 8463) and one RSA key, since receivers that verify only rsa-sha256
// are still common; a message is signed with both.
var dkimFiles = []struct {
	selector, file, alg string
}{
	{"pullmail-ed25519", "dkim-ed25519.pem", "ed25519"},
	{"pullmail-rsa", "dkim-rsa.pem", "rsa"},
}

// LoadDKIM reads the DKIM keys in dir (the data directory's keys/); none
// is no error (the MTA then sends unsigned).
func LoadDKIM(dir string) ([]DKIMKey, error) {
	var out []DKIMKey
	for _, f := range dkimFiles {
		data, err := os.ReadFile(filepath.Join(dir, f.file))
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("reading DKIM key %s: %w", f.file, err)
		}
		b, _ := pem.Decode(data)
		if b == nil || b.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("DKIM key %s: not a PEM PRIVATE KEY", f.file)
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("DKIM key %s: %w", f.file, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("DKIM key %s: not a signing key", f.file)
		}
		out = append(out, DKIMKey{Selector: f.selector, Signer: s})
	}
	return out, nil
}

// CreateDKIM makes the DKIM keys that dir lacks (0600) and returns every
// key in it.
func CreateDKIM(dir string) ([]DKIMKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, f := range dkimFiles {
		path := filepath.Join(dir, f.file)
		if _, err := os.Stat(path); err == nil {
			continue
		}
		var k any
		switch f.alg {
		case "ed25519":
			_, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return nil, err
			}
			k = priv
		case "rsa":
			priv, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				return nil, err
			}
			k = priv
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.Create(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil && !atomicfile.IsExist(err) {
			return nil, fmt.Errorf("writing DKIM key %s: %w", f.file, err)
		}
	}
	return LoadDKIM(dir)
}

// DKIMRecord is the TXT record that publishes a key, as a zone file line
// (strings of at most 255 characters, RFC 1035 §3.3.14).
func DKIMRecord(domain string, k DKIMKey) (string, error) {
	var kt, p string
	switch pub := k.Signer.Public().(type) {
	case ed25519.PublicKey:
		kt, p = "ed25519", base64.StdEncoding.EncodeToString(pub)
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", err
		}
		kt, p = "rsa", base64.StdEncoding.EncodeToString(der)
	default:
		return "", fmt.Errorf("DKIM key %s: unsupported key type %T", k.Selector, pub)
	}
	txt := "v=DKIM1; k=" + kt + "; p=" + p
	var parts []string
	for len(txt) > 255 {
		parts, txt = append(parts, txt[:255]), txt[255:]
	}
	parts = append(parts, txt)
	return fmt.Sprintf("%s._domainkey.%s. 3600 IN TXT \"%s\"", k.Selector, domain, strings.Join(parts, "\" \"")), nil
}
