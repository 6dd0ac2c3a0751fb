package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/federation"
)

func TestClientCommands(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (int, string, string) {
		env, out, errb := testEnv(nil, false)
		return Main(context.Background(), env, args), out.String(), errb.String()
	}
	if c, _, e := run("user", "add", "--data", dir, "alice@a.test", "--password", "long enough"); c != 0 {
		t.Fatal(e)
	}
	if c, out, e := run("client", "add", "--data", dir, "webapp", "--public", "--redirect-uri", "https://app.test/cb"); c != 0 || !strings.Contains(out, "registered") {
		t.Fatalf("public: %d %s", c, e)
	}
	key, err := federation.NewClientKey()
	if err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(jwks, key.JWKS(), 0o644)
	if c, _, e := run("client", "add", "--data", dir, "service", "--jwks", jwks); c != 0 {
		t.Fatalf("confidential: %d %s", c, e)
	}
	for _, bad := range [][]string{
		{"client", "add", "--data", dir, "x", "--public", "--redirect-uri", "http://evil.test/cb"},
		{"client", "add", "--data", dir, "x", "--public", "--redirect-uri", "https://app.test/cb#frag"},
		{"client", "add", "--data", dir, "x"},
		{"client", "add", "--data", dir, "x", "--public", "--jwks", jwks},
	} {
		if c, _, _ := run(bad...); c != 2 {
			t.Errorf("%v: exit %d, want 2", bad, c)
		}
	}
	if c, _, e := run("client", "add", "--data", dir, "webapp", "--public", "--redirect-uri", "https://app.test/cb"); c != 1 || !strings.Contains(e, "already exists") {
		t.Fatalf("duplicate: %d %s", c, e)
	}
	c, out, _ := run("client", "list", "--data", dir, "--json")
	var list []struct {
		ID           string   `json:"client_id"`
		Public       bool     `json:"public"`
		RedirectURIs []string `json:"redirect_uris"`
	}
	if c != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || list[0].ID != "service" || list[1].RedirectURIs[0] != "https://app.test/cb" {
		t.Fatalf("list: %d %s", c, out)
	}
	if c, _, e := run("client", "del", "--data", dir, "webapp"); c != 0 {
		t.Fatal(e)
	}
	if c, _, e := run("client", "del", "--data", dir, "webapp"); c != 1 || !strings.Contains(e, "no client") {
		t.Fatalf("second del: %d %s", c, e)
	}
	c1, out1, _ := run("keys", "rotate", "--data", dir)
	c2, out2, _ := run("keys", "rotate", "--data", dir)
	if c1 != 0 || c2 != 0 || out1 == out2 || !strings.HasPrefix(out1, "current signing key: ") {
		t.Fatalf("rotate: %q %q", out1, out2)
	}
}
