package server_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/server"
)

// TestBackendURLs: the spellings of --meta and --resources, their defaults,
// and a clear error, never showing a password, for anything else.
func TestBackendURLs(t *testing.T) {
	const dir = "/d"
	for _, tc := range []struct {
		flag, raw  string
		scheme     string // "" when an error is wanted
		path, show string
		err        string // in the error
	}{
		{flag: "meta", raw: "", scheme: "sqlite", path: "/d/meta.db", show: "sqlite:/d/meta.db"},
		{flag: "meta", raw: "sqlite:/var/lib/x/meta.db", scheme: "sqlite", path: "/var/lib/x/meta.db", show: "sqlite:/var/lib/x/meta.db"},
		{flag: "meta", raw: "sqlite:rel/m.db", scheme: "sqlite", path: "rel/m.db"},
		{flag: "meta", raw: "sqlite:///abs/m.db", scheme: "sqlite", path: "/abs/m.db"},
		{flag: "meta", raw: "SQLite:/x.db", scheme: "sqlite", path: "/x.db"},
		{flag: "meta", raw: "postgres://pullmail@db.example/mail?sslmode=verify-full", scheme: "postgres",
			show: "postgres://pullmail@db.example/mail?sslmode=verify-full"},
		{flag: "meta", raw: "postgres://u:hunter2@db/mail", scheme: "postgres", show: "postgres://u:xxxxx@db/mail"},
		{flag: "meta", raw: "postgres://u@db/mail?password=hunter2", scheme: "postgres", show: "postgres://u@db/mail?password=xxxxx"},
		{flag: "meta", raw: "sqlite:", err: "want sqlite:PATH"},
		{flag: "meta", raw: "sqlite://host/m.db", err: "a host is not allowed"},
		{flag: "meta", raw: "sqlite:/m.db?mode=ro", err: "without ? or #"},
		{flag: "meta", raw: "/var/lib/pullmail/meta.db", err: "not a URL"},
		{flag: "meta", raw: "mysql://u:hunter2@db/mail", err: `unknown scheme "mysql"`},
		{flag: "meta", raw: "file:/d/meta.db", err: `unknown scheme "file"`},
		{flag: "meta", raw: "postgres:u:hunter2@db", err: "want postgres://"},
		{flag: "meta", raw: "postgres://u:hunter2@/mail", err: "want postgres://USER@HOST/DB"},
		{flag: "meta", raw: "postgres://u:hunter2@db/", err: "want postgres://USER@HOST/DB"},
		{flag: "meta", raw: "postgres://u:hunter2@db:bad port/mail", err: "want postgres://USER@HOST/DB"},

		{flag: "resources", raw: "", scheme: "file", path: "/d/resources", show: "file:/d/resources"},
		{flag: "resources", raw: "file:/srv/blobs", scheme: "file", path: "/srv/blobs"},
		{flag: "resources", raw: "file:///srv/blobs/", scheme: "file", path: "/srv/blobs"},
		{flag: "resources", raw: "s3://mail/a.test?endpoint=https://s3.example&region=eu-1", scheme: "s3",
			show: "s3://mail/a.test?endpoint=https://s3.example&region=eu-1"},
		{flag: "resources", raw: "s3://mail", scheme: "s3"},
		{flag: "resources", raw: "s3://key:secret@mail/p", err: "want s3://BUCKET/PREFIX"},
		{flag: "resources", raw: "s3://mail/p?endpoint=http://s3.example", err: "only on a loopback host"},
		{flag: "resources", raw: "s3://mail/p?acl=public", err: `unknown parameter "acl"`},
		{flag: "resources", raw: "s3:/mail", err: "want s3://"},
		{flag: "resources", raw: "gs://mail/p", err: `unknown scheme "gs"`},
		{flag: "resources", raw: "sqlite:/x", err: `unknown scheme "sqlite"`},
		{flag: "resources", raw: "file:", err: "want file:PATH"},
		{flag: "resources", raw: "./blobs", err: "not a URL"},
	} {
		parse := server.ParseMetaURL
		if tc.flag == "resources" {
			parse = server.ParseResourcesURL
		}
		u, err := parse(dir, tc.raw)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "--"+tc.flag) {
				t.Errorf("--%s %q: error %v, want one with %q", tc.flag, tc.raw, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("--%s %q: the error shows the password: %v", tc.flag, tc.raw, err)
			}
			continue
		}
		if err != nil || u.Scheme != tc.scheme || tc.path != "" && u.Path != filepath.FromSlash(tc.path) {
			t.Errorf("--%s %q = %+v, %v; want %s %s", tc.flag, tc.raw, u, err, tc.scheme, tc.path)
			continue
		}
		if tc.show != "" && u.String() != tc.show {
			t.Errorf("--%s %q shown as %q, want %q", tc.flag, tc.raw, u, tc.show)
		}
		if strings.Contains(u.String(), "hunter2") {
			t.Errorf("--%s %q shown with its password: %s", tc.flag, tc.raw, u)
		}
	}
	if _, err := server.ParseMetaURL("", ""); err == nil || !strings.Contains(err.Error(), "--data") {
		t.Errorf("no data directory and no --meta: %v", err)
	}
}

// TestOpenBackendsRefuses: a store that cannot be opened is an error that
// names it, and nothing is left open.
func TestOpenBackendsRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// s3:// without credentials.
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	_, err := server.OpenBackends(ctx, dir, "", "s3://mail/p?endpoint=http://127.0.0.1:1", server.BackendOptions{})
	if err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Fatalf("s3 without credentials: %v", err)
	}
	b, err := server.OpenBackends(ctx, dir, "", "", server.BackendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.Describe(), "metadata sqlite:"+filepath.Join(dir, "meta.db")+", resources file:"+filepath.Join(dir, "resources"); got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// A plain store opened encrypted: refused, naming the rule.
	if _, err := server.OpenBackends(ctx, dir, "", "", server.BackendOptions{EncryptAtRest: true}); err == nil ||
		!strings.Contains(err.Error(), "encrypted or plain for life") {
		t.Fatalf("a plain store opened with a key: %v", err)
	}
}
