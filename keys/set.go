package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Options configure a Set.
type Options struct {
	// MaxTokenLifetime is the longest lifetime of anything the set signs. A
	// retired key keeps verifying this long after its retirement, so that
	// nothing it signed stops verifying before it expires. Required. Every
	// process that rotates the file (the server, `pullmail keys rotate`)
	// must use the same value.
	MaxTokenLifetime time.Duration
	// Clock is the time source; nil means time.Now.
	Clock func() time.Time
	// Logger receives reload failures; nil means slog.Default().
	Logger *slog.Logger
}

// KeyInfo is the metadata kept beside each key.
type KeyInfo struct {
	KID         string    `json:"kid"` // RFC 7638 SHA-256 thumbprint
	Alg         string    `json:"alg"`
	Created     time.Time `json:"created"`
	Retired     time.Time `json:"retired"`      // zero while current
	VerifyUntil time.Time `json:"verify_until"` // zero while current; Retired + MaxTokenLifetime after
}

// fileDoc is the key file: a private JWK set (RFC 7517 §5) with our
// metadata beside it, so that JOSE tools can read the file as a JWKS.
type fileDoc struct {
	Keys []jose.JSONWebKey `json:"keys"`
	Meta []KeyInfo         `json:"meta"`
}

// maxKeyFile bounds what load reads.
const maxKeyFile = 1 << 20

// Set is the signing key set of an Authorization Server. It is safe for
// concurrent use. It notices, at most once a second, when another process
// has rewritten its file, and reloads it.
type Set struct {
	path string
	opt  Options
	log  *slog.Logger

	mu        sync.Mutex // serialises reloads and rotations in this process
	st        atomic.Pointer[state]
	lastCheck atomic.Int64 // Clock time, in Unix ns, of the last stat
}

// state is one immutable snapshot of the file.
type state struct {
	info    fs.FileInfo
	current *entry
	keys    []*entry // current first, then retired, newest first
}

type entry struct {
	info KeyInfo
	priv *ecdsa.PrivateKey
	pub  jose.JSONWebKey // public key, kid, alg, use=sig
}

// Open opens the key set in path, creating it with one ES256 key when the file
// does not exist (and its directory, mode 0700). The file must not be
// readable by group or others.
func Open(path string, opt Options) (*Set, error) {
	if opt.MaxTokenLifetime <= 0 {
		return nil, errors.New("keys: Options.MaxTokenLifetime must be positive")
	}
	if opt.Clock == nil {
		opt.Clock = time.Now
	}
	s := &Set{path: path, opt: opt, log: opt.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	st, err := load(path)
	if errors.Is(err, fs.ErrNotExist) {
		st, err = s.create()
	}
	if err != nil {
		return nil, err
	}
	s.st.Store(st)
	s.lastCheck.Store(opt.Clock().UnixNano())
	return s, nil
}

// create writes a new file with one key, unless another process has just
// done so.
func (s *Set) create() (*state, error) {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	unlock, err := lockFile(s.path)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := load(s.path)
	if !errors.Is(err, fs.ErrNotExist) {
		return st, err
	}
	e, err := newEntry(s.opt.Clock())
	if err != nil {
		return nil, err
	}
	if err := save(s.path, []*entry{e}); err != nil {
		return nil, err
	}
	return load(s.path)
}

func newEntry(now time.Time) (*entry, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("keys: generate: %w", err)
	}
	pub := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	kid, err := Thumbprint(pub)
	if err != nil {
		return nil, err
	}
	pub.KeyID = kid
	return &entry{
		info: KeyInfo{KID: kid, Alg: string(jose.ES256), Created: now.UTC().Truncate(time.Second)},
		priv: priv,
		pub:  pub,
	}, nil
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of k's public key,
// base64url without padding: our kid, and DPoP's jkt (RFC 9449 §6.1).
func Thumbprint(k jose.JSONWebKey) (string, error) {
	k.Key = publicOf(k.Key)
	t, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("keys: thumbprint: %w", err)
	}
	return b64.EncodeToString(t), nil
}

// load reads and checks the key file.
func load(path string) (*state, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if err := checkPerm(path, info); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("keys: read %s: %w", path, err)
	}
	st, err := parseFile(data)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", path, err)
	}
	st.info = info
	return st, nil
}

func parseFile(data []byte) (*state, error) {
	if len(data) > maxKeyFile {
		return nil, errors.New("file too large")
	}
	if err := checkObject(data); err != nil {
		return nil, err
	}
	var doc fileDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Keys) != len(doc.Meta) {
		return nil, errors.New("keys and meta differ in length")
	}
	st := &state{}
	for i, k := range doc.Keys {
		m := doc.Meta[i]
		priv, ok := k.Key.(*ecdsa.PrivateKey)
		if !ok || priv.Curve != elliptic.P256() {
			return nil, fmt.Errorf("key %d is not a P-256 private key", i)
		}
		if m.Alg != string(jose.ES256) || (k.Algorithm != "" && k.Algorithm != m.Alg) {
			return nil, fmt.Errorf("key %d: alg %q, want ES256", i, m.Alg)
		}
		pub := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: m.Alg, Use: "sig"}
		kid, err := Thumbprint(pub)
		if err != nil {
			return nil, err
		}
		if kid != m.KID || kid != k.KeyID {
			return nil, fmt.Errorf("key %d: kid is not its thumbprint", i)
		}
		pub.KeyID = kid
		e := &entry{info: m, priv: priv, pub: pub}
		if m.Retired.IsZero() {
			if st.current != nil {
				return nil, errors.New("more than one current key")
			}
			st.current = e
		}
		st.keys = append(st.keys, e)
	}
	if st.current == nil {
		return nil, errors.New("no current key")
	}
	sortEntries(st.keys)
	return st, nil
}

// sortEntries puts the current key first, then retired keys, newest first.
func sortEntries(es []*entry) {
	slices.SortStableFunc(es, func(a, b *entry) int {
		switch {
		case a.info.Retired.IsZero() != b.info.Retired.IsZero():
			if a.info.Retired.IsZero() {
				return -1
			}
			return 1
		}
		return b.info.Retired.Compare(a.info.Retired)
	})
}

// save writes the entries to path atomically: a temporary file in the same
// directory (mode 0600), fsync, rename, fsync of the directory.
func save(path string, es []*entry) error {
	var doc fileDoc
	for _, e := range es {
		doc.Keys = append(doc.Keys, jose.JSONWebKey{Key: e.priv, KeyID: e.info.KID, Algorithm: e.info.Alg, Use: "sig"})
		doc.Meta = append(doc.Meta, e.info)
	}
	data, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	data = append(data, '\n')

	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("keys: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("keys: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keys: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("keys: sync %s: %w", dir, err)
	}
	return nil
}

// Rotate makes a new current key. The old one is retired and verifies until
// MaxTokenLifetime from now; retired keys past their verify_until are
// dropped. It works on the file as it is on disk, under a lock, so that a
// rotation by another process is never lost.
func (s *Set) Rotate() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := lockFile(s.path)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := load(s.path)
	if err != nil {
		return err
	}
	now := s.opt.Clock().UTC().Truncate(time.Second)
	e, err := newEntry(now)
	if err != nil {
		return err
	}
	es := []*entry{e}
	for _, old := range st.keys {
		info := old.info
		if info.Retired.IsZero() {
			info.Retired = now
			info.VerifyUntil = now.Add(s.opt.MaxTokenLifetime)
		}
		if !now.Before(info.VerifyUntil) {
			continue
		}
		es = append(es, &entry{info: info, priv: old.priv, pub: old.pub})
	}
	if err := save(s.path, es); err != nil {
		return err
	}
	st, err = load(s.path)
	if err != nil {
		return err
	}
	s.st.Store(st)
	return nil
}

// refresh reloads the file when it changed on disk, stat-ing it at most once a
// second. A file that fails to load is logged and the keys in memory stay.
func (s *Set) refresh() *state {
	now := s.opt.Clock().UnixNano()
	last := s.lastCheck.Load()
	if now >= last && now-last < int64(time.Second) || !s.lastCheck.CompareAndSwap(last, now) {
		return s.st.Load()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.st.Load()
	info, err := os.Stat(s.path)
	if err != nil {
		s.log.Error("keys: stat key file", "path", s.path, "err", err)
		return old
	}
	if os.SameFile(info, old.info) && info.ModTime().Equal(old.info.ModTime()) && info.Size() == old.info.Size() {
		return old
	}
	st, err := load(s.path)
	if err != nil {
		s.log.Error("keys: reload key file", "path", s.path, "err", err)
		return old
	}
	s.st.Store(st)
	return st
}

// verifying is the public keys that verify at now: the current key and the
// retired keys before their verify_until.
func (st *state) verifying(now time.Time) jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(st.keys))}
	for _, e := range st.keys {
		if e.info.Retired.IsZero() || now.Before(e.info.VerifyUntil) {
			set.Keys = append(set.Keys, e.pub)
		}
	}
	return set
}

// PublicJWKS is the set to publish at jwks_uri (RFC 8414 §2): public members
// only, of the current key and of the retired keys that still verify.
func (s *Set) PublicJWKS() jose.JSONWebKeySet {
	return s.refresh().verifying(s.opt.Clock())
}

// Keys describes every key in the set, the current one first.
func (s *Set) Keys() []KeyInfo {
	st := s.refresh()
	out := make([]KeyInfo, len(st.keys))
	for i, e := range st.keys {
		out[i] = e.info
	}
	return out
}

// CurrentKID is the kid of the key Sign uses.
func (s *Set) CurrentKID() string { return s.refresh().current.info.KID }

// Verify is Verify with the set's verifying keys.
func (s *Set) Verify(compact string, want Expect) ([]byte, *jose.JSONWebKey, error) {
	return Verify(compact, s.refresh().verifying(s.opt.Clock()), want)
}

// Sign makes a compact JWS (RFC 7515 §7.1) of claims, marshalled with
// encoding/json (pass a json.RawMessage for bytes already encoded), with the
// current key. The header is {"alg":"ES256","kid":...,"typ":typ}; typ is
// required (RFC 8725 §3.11): "at+jwt" for access tokens (RFC 9068 §2.1),
// "pullmail-assertion+jwt" for assertions.
func (s *Set) Sign(typ string, claims any) (string, error) {
	if typ == "" || len(typ) > 64 {
		return "", errors.New("keys: Sign: typ must be 1 to 64 bytes")
	}
	for _, c := range []byte(typ) {
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return "", errors.New("keys: Sign: typ must be printable ASCII")
		}
	}
	cur := s.refresh().current
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		KID string `json:"kid"`
		Typ string `json:"typ"`
	}{cur.info.Alg, cur.info.KID, typ})
	if err != nil {
		return "", fmt.Errorf("keys: Sign: %w", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("keys: Sign: claims: %w", err)
	}
	if len(payload) == 0 || payload[0] != '{' {
		return "", errors.New("keys: Sign: claims must marshal to a JSON object")
	}
	n64 := b64.EncodedLen(len(hdr)) + 1 + b64.EncodedLen(len(payload))
	buf := make([]byte, n64, n64+1+b64.EncodedLen(64))
	b64.Encode(buf, hdr)
	buf[b64.EncodedLen(len(hdr))] = '.'
	b64.Encode(buf[b64.EncodedLen(len(hdr))+1:], payload)
	d := sha256.Sum256(buf)
	r, sv, err := ecdsa.Sign(rand.Reader, cur.priv, d[:])
	if err != nil {
		return "", fmt.Errorf("keys: Sign: %w", err)
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig[:])
	if len(buf) > MaxTokenSize {
		return "", fmt.Errorf("keys: Sign: token of %d bytes is over %d", len(buf), MaxTokenSize)
	}
	return string(buf), nil
}
