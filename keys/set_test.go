package keys

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestOpenCreatesFile(t *testing.T) {
	s, _, path := newSet(t)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", info.Mode().Perm())
	}
	dir, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if dir.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %v, want 0700", dir.Mode().Perm())
	}

	// The file is a private JWK set that JOSE tools can read.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var jwks jose.JSONWebKeySet
	if err := json.Unmarshal(data, &jwks); err != nil {
		t.Fatal(err)
	}
	if len(jwks.Keys) != 1 || jwks.Keys[0].IsPublic() || jwks.Keys[0].KeyID != s.CurrentKID() {
		t.Fatalf("file holds %+v", jwks.Keys)
	}
	kid, err := Thumbprint(jwks.Keys[0])
	if err != nil {
		t.Fatal(err)
	}
	if kid != s.CurrentKID() {
		t.Errorf("kid %s is not the RFC 7638 thumbprint %s", s.CurrentKID(), kid)
	}
	infos := s.Keys()
	if len(infos) != 1 || infos[0].Alg != "ES256" || !infos[0].Retired.IsZero() || !infos[0].VerifyUntil.IsZero() || infos[0].Created.IsZero() {
		t.Errorf("Keys() = %+v", infos)
	}

	// Opening again loads the same key.
	again := openSet(t, path, newClock())
	if again.CurrentKID() != s.CurrentKID() {
		t.Errorf("reopened kid %s, want %s", again.CurrentKID(), s.CurrentKID())
	}
}

func TestOpenRefuses(t *testing.T) {
	good := func(t *testing.T) string {
		_, _, path := newSet(t)
		return path
	}
	tests := []struct {
		name  string
		setup func(t *testing.T) string
		opt   Options
	}{
		{"no MaxTokenLifetime", func(t *testing.T) string { return filepath.Join(t.TempDir(), "k.json") }, Options{}},
		{"group-readable file", func(t *testing.T) string {
			p := good(t)
			if err := os.Chmod(p, 0o640); err != nil {
				t.Fatal(err)
			}
			return p
		}, Options{MaxTokenLifetime: time.Hour}},
		{"not JSON", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "k.json")
			if err := os.WriteFile(p, []byte("nope"), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, Options{MaxTokenLifetime: time.Hour}},
		{"no current key", func(t *testing.T) string {
			p := good(t)
			rewrite(t, p, func(doc map[string]any) {
				doc["meta"].([]any)[0].(map[string]any)["retired"] = "2030-01-01T00:00:00Z"
			})
			return p
		}, Options{MaxTokenLifetime: time.Hour}},
		{"kid not the thumbprint", func(t *testing.T) string {
			p := good(t)
			rewrite(t, p, func(doc map[string]any) {
				doc["meta"].([]any)[0].(map[string]any)["kid"] = "../../etc/passwd"
				doc["keys"].([]any)[0].(map[string]any)["kid"] = "../../etc/passwd"
			})
			return p
		}, Options{MaxTokenLifetime: time.Hour}},
		{"public key only", func(t *testing.T) string {
			p := good(t)
			rewrite(t, p, func(doc map[string]any) {
				delete(doc["keys"].([]any)[0].(map[string]any), "d")
			})
			return p
		}, Options{MaxTokenLifetime: time.Hour}},
		{"meta missing", func(t *testing.T) string {
			p := good(t)
			rewrite(t, p, func(doc map[string]any) { delete(doc, "meta") })
			return p
		}, Options{MaxTokenLifetime: time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t)
			if _, err := Open(path, tt.opt); err == nil {
				t.Fatal("Open succeeded")
			}
		})
	}
}

// rewrite edits the key file's JSON in place, keeping mode 0600.
func rewrite(t *testing.T, path string, edit func(map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	if data, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func kids(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

func TestRotate(t *testing.T) {
	s, clk, path := newSet(t)
	old := s.CurrentKID()
	tok, err := s.Sign(typAT, Claims{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}

	clk.Advance(10 * time.Minute)
	if err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	rotatedAt := clk.Now()
	cur := s.CurrentKID()
	if cur == old {
		t.Fatal("Rotate kept the current key")
	}
	if got := kids(s.PublicJWKS()); len(got) != 2 || got[0] != cur || got[1] != old {
		t.Fatalf("JWKS kids %v, want [%s %s]", got, cur, old)
	}
	infos := s.Keys()
	if !infos[1].Retired.Equal(rotatedAt) || !infos[1].VerifyUntil.Equal(rotatedAt.Add(testLifetime)) {
		t.Fatalf("retired key %+v: want retired %v, verify_until %v", infos[1], rotatedAt, rotatedAt.Add(testLifetime))
	}
	newTok, err := s.Sign(typAT, Claims{Subject: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if _, key, err := s.Verify(newTok, Expect{Typ: typAT}); err != nil || key.KeyID != cur {
		t.Fatalf("new token: %v (key %v)", err, key)
	}

	// The old token verifies until verify_until, and not after.
	clk.Advance(testLifetime - time.Second)
	if _, key, err := s.Verify(tok, Expect{Typ: typAT}); err != nil || key.KeyID != old {
		t.Fatalf("old token before verify_until: %v", err)
	}
	clk.Advance(time.Second)
	_, _, err = s.Verify(tok, Expect{Typ: typAT})
	wantInvalidToken(t, err, "not found")
	if got := kids(s.PublicJWKS()); len(got) != 1 || got[0] != cur {
		t.Fatalf("JWKS kids %v after verify_until, want [%s]", got, cur)
	}
	if n := len(s.Keys()); n != 2 {
		t.Fatalf("file holds %d keys before the next rotation, want 2", n)
	}

	// The next rotation drops the expired key.
	if err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	infos = s.Keys()
	if len(infos) != 2 || infos[1].KID != cur {
		t.Fatalf("after a second rotation: %+v", infos)
	}
	if data, err := os.ReadFile(path); err != nil || strings.Contains(string(data), old) {
		t.Fatalf("file still names the dropped key %s (%v)", old, err)
	}

	// No temporary file is left behind.
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("left behind %s", e.Name())
		}
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("after rotation: %v, %v", info.Mode(), err)
	}
}

// TestReloadAfterRotationElsewhere stands for `pullmail keys rotate` run while
// the server is up: a second Set on the same file rotates.
func TestReloadAfterRotationElsewhere(t *testing.T) {
	server, clk, path := newSet(t)
	old := server.CurrentKID()
	tok, err := server.Sign(typAT, Claims{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	cli := openSet(t, path, clk)
	if err := cli.Rotate(); err != nil {
		t.Fatal(err)
	}
	cur := cli.CurrentKID()
	cliTok, err := cli.Sign(typAT, Claims{Subject: "bob"})
	if err != nil {
		t.Fatal(err)
	}

	// Within the second the server has not looked yet.
	if server.CurrentKID() != old {
		t.Fatal("server stat-ed its file twice within a second")
	}
	clk.Advance(1500 * time.Millisecond)
	if server.CurrentKID() != cur {
		t.Fatalf("server signs with %s, want the rotated %s", server.CurrentKID(), cur)
	}
	if got := kids(server.PublicJWKS()); len(got) != 2 || got[0] != cur || got[1] != old {
		t.Fatalf("server JWKS %v", got)
	}
	for _, tk := range []string{tok, cliTok} {
		if _, _, err := server.Verify(tk, Expect{Typ: typAT}); err != nil {
			t.Fatalf("server refuses: %v", err)
		}
	}

	// A rotation by the server now keeps the other process's key.
	if err := server.Rotate(); err != nil {
		t.Fatal(err)
	}
	if got := kids(server.PublicJWKS()); len(got) != 3 || got[1] != cur || got[2] != old {
		t.Fatalf("server JWKS after its own rotation %v", got)
	}

	// A broken file is logged and ignored: the keys in memory stay.
	if err := os.WriteFile(path, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	if _, _, err := server.Verify(cliTok, Expect{Typ: typAT}); err != nil {
		t.Fatalf("after a broken file: %v", err)
	}
	if _, err := server.Sign(typAT, Claims{}); err != nil {
		t.Fatalf("after a broken file: %v", err)
	}
}

func TestPublicJWKSHasNoPrivateMembers(t *testing.T) {
	s, _, _ := newSet(t)
	if err := s.Rotate(); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(s.PublicJWKS())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 2 {
		t.Fatalf("%d keys", len(doc.Keys))
	}
	for _, k := range doc.Keys {
		for _, m := range privateMembers {
			if _, ok := k[m]; ok {
				t.Errorf("published key has %q: %s", m, data)
			}
		}
		if k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["use"] != "sig" || k["kid"] == "" {
			t.Errorf("published key %v", k)
		}
	}
	// What we publish is what another domain's ParseJWKS accepts.
	parsed, err := ParseJWKS(data)
	if err != nil || len(parsed.Keys) != 2 {
		t.Fatalf("ParseJWKS of our own JWKS: %d keys, %v", len(parsed.Keys), err)
	}
}

func TestThumbprintRFC7638(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "rfc7638-3.1.json"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := ParseJWKS(data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Thumbprint(set.Keys[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Fatalf("thumbprint %s, want %s", got, want)
	}
}

func TestConcurrentUse(t *testing.T) {
	s, clk, path := newSet(t)
	other := openSet(t, path, clk)
	var wg sync.WaitGroup
	errc := make(chan error, 100)
	for i := range 8 {
		wg.Go(func() {
			for range 20 {
				tok, err := s.Sign(typAT, Claims{Subject: "alice"})
				if err != nil {
					errc <- err
					return
				}
				if _, _, err := s.Verify(tok, Expect{Typ: typAT}); err != nil {
					errc <- err
					return
				}
				s.PublicJWKS()
				if i == 0 {
					clk.Advance(300 * time.Millisecond)
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 3 {
				if err := s.Rotate(); err != nil {
					errc <- err
				}
				if err := other.Rotate(); err != nil {
					errc <- err
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	// Twelve rotations within the token lifetime: none lost.
	clk.Advance(2 * time.Second)
	if n := len(other.Keys()); n != 13 {
		t.Errorf("%d keys after 12 rotations, want 13", n)
	}
}
