package cli

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/postgres/pgtest"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/s3store/s3test"
	"github.com/pullmail/pullmail/server"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// run runs one command and fails the test unless it exits 0; it returns
// its standard output.
func run(t *testing.T, vars map[string]string, args ...string) string {
	t.Helper()
	env, out, errb := testEnv(vars, false)
	if code := Main(context.Background(), env, args); code != 0 {
		t.Fatalf("%s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
	return out.String()
}

// TestServeOnPostgresAndS3 runs a domain whose metadata is in PostgreSQL
// and whose resources are in an S3 bucket (versitygw), named by --meta and
// --resources: the admin commands make its users (by flags, and by the
// config file serve reads), serve delivers a message with an attachment
// from one to the other, doctor names the backends without the password,
// fsck finds them clean, and the data directory holds neither a database
// nor a resource.
func TestServeOnPostgresAndS3(t *testing.T) {
	pg := pgtest.URL(t)
	s3 := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	// The throwaway cluster trusts loopback: the password is ignored,
	// and must never be printed.
	metaURL := strings.Replace(pg, "postgres://postgres@", "postgres://postgres:hunter2@", 1)
	resURL := s3.URL()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	conf := filepath.Join(dir, "pullmail.conf")
	if err := os.WriteFile(conf, []byte("data = "+data+"\ndomain = a.test\nmeta = "+metaURL+"\nresources = "+resURL+
		"\nlog-level = warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Admin commands: by flags, and by the config file.
	run(t, nil, "user", "add", "--data", data, "--meta", metaURL, "--resources", resURL, "--password", "correct horse battery", "alice@a.test")
	run(t, nil, "user", "add", "--config", conf, "--password", "correct horse battery", "bob@a.test")
	if got := strings.Fields(run(t, nil, "user", "list", "--config", conf)); len(got) != 4 || got[0] != "alice@a.test" || got[2] != "bob@a.test" {
		t.Fatalf("user list from the config: %q", got)
	}
	aliceTok := strings.TrimSpace(run(t, nil, "token", "create", "--data", data, "--meta", metaURL, "alice@a.test"))
	bobTok := strings.TrimSpace(run(t, nil, "token", "create", "--config", conf, "bob@a.test"))
	// Without the URLs, the data directory is a new, empty SQLite domain.
	if got := run(t, nil, "user", "list", "--data", filepath.Join(dir, "other")); got != "" {
		t.Fatalf("another data directory has users: %q", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }, IsTerminal: func(any) bool { return false }}
	done := make(chan int, 1)
	go func() { done <- Main(ctx, env, []string{"serve", "--config", conf, "--listen", "127.0.0.1:0"}) }()
	serving := regexp.MustCompile(`pullmail serving a.test at (https://127.0.0.1:\d+)`)
	deadline := time.Now().Add(60 * time.Second)
	var url string
	for url == "" {
		if m := serving.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("serve ended: exit %d %q %q", code, out.String(), errb.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %q %q", out.String(), errb.String())
		}
	}
	ca := filepath.Join(data, "ca.pem")
	attach := filepath.Join(dir, "photo.bin")
	photo := []byte(strings.Repeat("venice ", 100_000))
	if err := os.WriteFile(attach, photo, 0o600); err != nil {
		t.Fatal(err)
	}
	alice := map[string]string{"PULLMAIL_SERVER": url, "PULLMAIL_TOKEN": aliceTok, "PULLMAIL_CA": ca}
	bob := map[string]string{"PULLMAIL_SERVER": url, "PULLMAIL_TOKEN": bobTok, "PULLMAIL_CA": ca}
	msgid := strings.TrimSpace(run(t, alice, "send", "--to", "bob@a.test", "--subject", "Vacation photo", "--text", "Venice!", "--attach", attach))
	var list []struct {
		MessageID string `json:"message_id"`
		Subject   string `json:"subject"`
	}
	if err := json.Unmarshal([]byte(run(t, bob, "list", "--json")), &list); err != nil || len(list) != 1 ||
		list[0].MessageID != msgid || list[0].Subject != "Vacation photo" {
		t.Fatalf("bob's list: %+v %v", list, err)
	}
	got := t.TempDir()
	run(t, bob, "get", msgid, "--out", got)
	if b, err := os.ReadFile(filepath.Join(got, "photo.bin")); err != nil || string(b) != string(photo) {
		t.Fatalf("bob's attachment: %d bytes, %v", len(b), err)
	}

	// doctor says what is in use, without the password.
	doc := run(t, nil, "doctor", "--config", conf)
	wantMeta := strings.Replace(metaURL, ":hunter2@", ":xxxxx@", 1)
	if !strings.Contains(doc, "metadata "+wantMeta) || !strings.Contains(doc, "resources "+resURL) ||
		!strings.Contains(doc, "domain a.test") || strings.Contains(doc, "hunter2") {
		t.Fatalf("doctor: %q", doc)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve: exit %d %q", code, errb.String())
	}
	if strings.Contains(errb.String(), "hunter2") {
		t.Fatalf("serve logged the password: %q", errb.String())
	}

	// fsck checks the same stores (no SQLite pragmas: PostgreSQL).
	if got := run(t, nil, "fsck", "--config", conf); !strings.Contains(got, "clean") {
		t.Fatalf("fsck on PostgreSQL and S3: %q", got)
	}
	// The bytes are in the bucket, the rows in PostgreSQL; the data
	// directory has neither.
	for _, p := range []string{"meta.db", "resources"} {
		if _, err := os.Stat(filepath.Join(data, p)); !os.IsNotExist(err) {
			t.Errorf("%s in the data directory: %v", p, err)
		}
	}
	b, err := server.OpenBackends(context.Background(), data, metaURL, resURL, server.BackendOptions{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	id := resource.IDOf(photo)
	if info, err := b.Resources.Stat(context.Background(), id); err != nil || info.Size != int64(len(photo)) {
		t.Fatalf("the photo in the S3 store: %+v %v", info, err)
	}
	objects := 0
	for oi := range s3.Client(t).ListObjects(context.Background(), s3.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		if strings.HasSuffix(oi.Key, "/"+string(id)) {
			objects++
		}
	}
	if objects != 1 {
		t.Fatalf("%d objects of the photo in the bucket", objects)
	}
	u, err := b.Meta.UserByAddress(context.Background(), "bob@a.test")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := b.Meta.Messages(context.Background(), u.ID, meta.ListOptions{Folder: meta.Inbox})
	if err != nil || len(msgs) != 1 || msgs[0].MessageID != msgid {
		t.Fatalf("bob's inbox in PostgreSQL: %+v %v", msgs, err)
	}
}

// TestAdminBackendFlags: every admin command that opens a data directory
// takes --meta, --resources and --config, and refuses an unknown scheme or
// a malformed URL before touching anything (exit 2, the flag named).
func TestAdminBackendFlags(t *testing.T) {
	data := t.TempDir()
	for _, c := range commands {
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.flags(fs)
		if fs.Lookup("data") == nil || c.name == "dev" || c.name == "bench" {
			continue
		}
		for _, f := range []string{"meta", "resources", "config"} {
			if fs.Lookup(f) == nil {
				t.Errorf("%s has --data but not --%s", c.name, f)
			}
		}
	}
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"user", "list", "--data", data, "--meta", "mysql://u:hunter2@db/x"}, `--meta mysql://u:xxxxx@db/x: unknown scheme "mysql"`},
		{[]string{"user", "add", "--data", data, "--resources", "gs://b/p", "--password", "correct horse battery", "a@a.test"}, `unknown scheme "gs"`},
		{[]string{"fsck", "--data", data, "--resources", "s3://b/p?endpoint=http://s3.example"}, "only on a loopback host"},
		{[]string{"serve", "--data", data, "--domain", "a.test", "--meta", "sqlite:"}, "want sqlite:PATH"},
		{[]string{"keys", "rotate", "--data", data, "--meta", "postgres:/x"}, "want postgres://"},
		{[]string{"client", "list", "--data", data, "--resources", "file://host/x"}, "a host is not allowed"},
	} {
		env, _, errb := testEnv(nil, false)
		if code := Main(context.Background(), env, tc.args); code != 2 || !strings.Contains(errb.String(), tc.err) || strings.Contains(errb.String(), "hunter2") {
			t.Errorf("%q: exit %d %q; want 2 and %q", tc.args, code, errb.String(), tc.err)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "meta.db")); !os.IsNotExist(err) {
		t.Errorf("a refused command made the database: %v", err)
	}
	// config check reports a bad URL with its line.
	conf := filepath.Join(data, "bad.conf")
	os.WriteFile(conf, []byte("data = /x\nmeta = postgres://u:hunter2@/x\n"), 0o600)
	env, _, errb := testEnv(nil, false)
	if code := Main(context.Background(), env, []string{"config", "check", conf}); code != 1 ||
		!strings.Contains(errb.String(), conf+":2:") || strings.Contains(errb.String(), "hunter2") {
		t.Errorf("config check of a bad meta: exit %d %q", code, errb.String())
	}
}
