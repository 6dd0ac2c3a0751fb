package federation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/pullmail/pullmail/atomicfile"
	"github.com/pullmail/pullmail/dpop"
)

// ClientKey is a confidential client's key for private_key_jwt (RFC 7523
// §2.2): this domain's MTA authenticates with one at its own authorization
// server and at other domains' (docs/PROTOCOL.md §10.1).
type ClientKey struct {
	priv *ecdsa.PrivateKey
	kid  string
}

// NewClientKey makes a P-256 key.
func NewClientKey() (*ClientKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return clientKey(priv)
}

func clientKey(priv *ecdsa.PrivateKey) (*ClientKey, error) {
	kid, err := dpop.Thumbprint(jose.JSONWebKey{Key: &priv.PublicKey})
	if err != nil {
		return nil, err
	}
	return &ClientKey{priv: priv, kid: kid}, nil
}

// LoadOrCreateClientKey reads the key from path (a private JWK, mode 0600)
// or creates it there atomically.
func LoadOrCreateClientKey(path string) (*ClientKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("%s: a private key must not be readable by group or others", path)
		}
		var jwk jose.JSONWebKey
		if err := json.Unmarshal(b, &jwk); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		priv, ok := jwk.Key.(*ecdsa.PrivateKey)
		if !ok || priv.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%s: not a P-256 private key", path)
		}
		return clientKey(priv)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, err := NewClientKey()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(jose.JSONWebKey{Key: k.priv, KeyID: k.kid, Algorithm: string(jose.ES256), Use: "sig"})
	if err != nil {
		return nil, err
	}
	// If another process created the key meanwhile, it wins and we load
	// its key.
	if err := atomicfile.Create(path, b, 0o600); atomicfile.IsExist(err) {
		return LoadOrCreateClientKey(path)
	} else if err != nil {
		return nil, err
	}
	return k, nil
}

// JWKS is the key's public half as a JSON Web Key Set document.
func (k *ClientKey) JWKS() []byte {
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.priv.PublicKey, KeyID: k.kid,
		Algorithm: string(jose.ES256), Use: "sig"}}})
	return b
}

// Assertion signs a client assertion for clientID, addressed to an
// authorization server's token endpoint, valid for one minute.
func (k *ClientKey) Assertion(clientID, tokenEndpoint string, now time.Time) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid))
	if err != nil {
		return "", err
	}
	return jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: clientID, Subject: clientID, Audience: jwt.Audience{tokenEndpoint}, ID: rand.Text(),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute)),
	}).Serialize()
}
