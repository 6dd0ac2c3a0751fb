package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// ProofType is the typ header of every DPoP proof (RFC 9449 §4.2).
const ProofType = "dpop+jwt"

// Key is a client's DPoP key: an ECDSA P-256 private key that signs ES256
// proofs. It is safe for concurrent use. The zero Key is not usable: make one
// with NewKey or unmarshal a stored one.
type Key struct {
	priv   *ecdsa.PrivateKey
	signer jose.Signer
	thumb  string
}

// NewKey generates a fresh P-256 key.
func NewKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dpop: generate key: %w", err)
	}
	return newKey(priv)
}

func newKey(priv *ecdsa.PrivateKey) (*Key, error) {
	if priv == nil || priv.Curve != elliptic.P256() {
		return nil, errors.New("dpop: key: not an ECDSA P-256 private key")
	}
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType(ProofType)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv}, opts)
	if err != nil {
		return nil, fmt.Errorf("dpop: key: %w", err)
	}
	thumb, err := Thumbprint(jose.JSONWebKey{Key: &priv.PublicKey})
	if err != nil {
		return nil, fmt.Errorf("dpop: key: %w", err)
	}
	return &Key{priv: priv, signer: signer, thumb: thumb}, nil
}

// Thumbprint is the key's RFC 7638 SHA-256 thumbprint, base64url: the value
// of cnf.jkt in the tokens bound to it (RFC 9449 §6).
func (k *Key) Thumbprint() string { return k.thumb }

// PublicJWK is the public half of the key as a JWK.
func (k *Key) PublicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.priv.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
}

// MarshalJSON encodes the private key as a JWK (RFC 7517) for storage. It
// holds the secret "d": write it only to a file of mode 0600.
func (k *Key) MarshalJSON() ([]byte, error) {
	if k == nil || k.priv == nil {
		return nil, errors.New("dpop: marshal: no key")
	}
	return json.Marshal(jose.JSONWebKey{Key: k.priv, Algorithm: string(jose.ES256), Use: "sig"})
}

// UnmarshalJSON decodes a private JWK written by MarshalJSON.
func (k *Key) UnmarshalJSON(data []byte) error {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("dpop: unmarshal key: %w", err)
	}
	priv, ok := jwk.Key.(*ecdsa.PrivateKey)
	if !ok {
		return errors.New("dpop: unmarshal key: not an EC private key")
	}
	nk, err := newKey(priv)
	if err != nil {
		return err
	}
	*k = *nk
	return nil
}

// ParseKey decodes a private JWK written by Key.MarshalJSON.
func ParseKey(data []byte) (*Key, error) {
	k := new(Key)
	if err := k.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	return k, nil
}

// claims are a proof's JWT claims (RFC 9449 §4.2).
type claims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	ATH   string `json:"ath,omitempty"`
	Nonce string `json:"nonce,omitempty"`
}

// Proof signs a DPoP proof for one request: method htm to URL htu (its query
// and fragment are dropped, RFC 9449 §4.2), issued at now. accessToken, when
// not empty, is the token sent with the request and adds its hash as ath
// (§7.1); nonce, when not empty, is the server's last DPoP-Nonce (§8). Make a
// new proof for every request: servers accept each jti once.
func (k *Key) Proof(htm, htu, accessToken, nonce string, now time.Time) (string, error) {
	if k == nil || k.signer == nil {
		return "", errors.New("dpop: proof: no key")
	}
	if htm == "" {
		return "", errors.New("dpop: proof: empty method")
	}
	u, err := url.Parse(htu)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("dpop: proof: htu %q is not an absolute URL", htu)
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	var jti [16]byte
	rand.Read(jti[:]) // never fails (crypto/rand)
	c := claims{
		JTI:   base64.RawURLEncoding.EncodeToString(jti[:]),
		HTM:   htm,
		HTU:   u.String(),
		IAT:   now.Unix(),
		Nonce: nonce,
	}
	if accessToken != "" {
		c.ATH = accessTokenHash(accessToken)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("dpop: proof: %w", err)
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("dpop: proof: %w", err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("dpop: proof: %w", err)
	}
	return s, nil
}

// accessTokenHash is ath: base64url(SHA-256(ASCII(token))) (RFC 9449 §4.2).
func accessTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of a public (or private)
// key, base64url without padding: the hash of the key's required members
// only, in lexical order (§3.2), so that optional members such as kid, alg
// or use do not change it.
func Thumbprint(jwk jose.JSONWebKey) (string, error) {
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("dpop: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}
