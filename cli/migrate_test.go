package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/backup"
	"github.com/pullmail/pullmail/backup/backuptest"
	"github.com/pullmail/pullmail/meta/postgres/pgtest"
	"github.com/pullmail/pullmail/resource/fsstore"
	"github.com/pullmail/pullmail/resource/s3store/s3test"
	"github.com/pullmail/pullmail/server"
)

// fillDataDir makes a data directory on SQLite and files holding spec.
func fillDataDir(t *testing.T, dir, metaURL, resURL string, spec backuptest.Spec) (backuptest.Fixture, backuptest.Listing) {
	t.Helper()
	b, err := server.OpenBackends(t.Context(), dir, metaURL, resURL, server.BackendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fx := backuptest.Fill(t, b.Meta, b.Resources, spec)
	return fx, backuptest.List(t, b.Meta, b.Resources)
}

// listDataDir lists the stores of a data directory.
func listDataDir(t *testing.T, dir, metaURL, resURL string) backuptest.Listing {
	t.Helper()
	b, err := server.OpenBackends(t.Context(), dir, metaURL, resURL, server.BackendOptions{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	return backuptest.List(t, b.Meta, b.Resources)
}

// runCode runs a command that must fail, with --json among args, and
// returns its exit status, the JSON error's code and standard error.
func runCode(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	env, out, errb := testEnv(nil, false)
	code := Main(ctx, env, args)
	var e struct {
		Error struct{ Code, Message string }
	}
	if code != 0 {
		if err := json.Unmarshal(out.Bytes(), &e); err != nil {
			t.Fatalf("%s: exit %d, stdout %q is no JSON error: %v", strings.Join(args, " "), code, out.String(), err)
		}
	}
	return code, e.Error.Code, errb.String()
}

func summary(t *testing.T, out string) backup.Summary {
	t.Helper()
	var s backup.Summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	return s
}

// TestMigrateToPostgresAndS3 moves a data directory of 1,000 messages and
// 100 MiB of resources from SQLite and files to PostgreSQL and S3
// (versitygw). The first run is interrupted (its context cancelled once
// the bucket holds a third of the resources); the second resumes it,
// copying only what is missing, and verifies: every user lists the same
// folders with the same messages, and every resource reads back with its
// digest.
func TestMigrateToPostgresAndS3(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB: not in -short")
	}
	pg := pgtest.URL(t)
	s3 := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	res := s3.URL()
	dir := t.TempDir()
	spec := backuptest.Spec{Users: 5, Messages: 1000, Bytes: 100 << 20, Seed: 7}
	fx, before := fillDataDir(t, dir, "", "", spec)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { // cancel part-way: once the bucket's directory holds a file per third of the resources
		for ctx.Err() == nil {
			n := 0
			filepath.WalkDir(s3.Dir, func(_ string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					n++
				}
				return nil
			})
			if n >= len(fx.Resources)/3 {
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	args := []string{"migrate", "--data", dir, "--to-meta", pg, "--to-resources", res, "--json"}
	code, errCode, stderr := runCode(t, ctx, args...)
	if code == 0 || errCode != codeInterrupt || !strings.Contains(stderr, "run the same command again") {
		t.Fatalf("interrupted migrate: exit %d, code %q, %q", code, errCode, stderr)
	}

	start := time.Now()
	sum := summary(t, run(t, nil, args...))
	elapsed := time.Since(start)
	if !sum.Verified || sum.Messages != spec.Messages || sum.Resources != len(fx.Resources) ||
		sum.ResourcesCopied == 0 || sum.ResourcesCopied >= len(fx.Resources) {
		t.Errorf("resumed migrate: %+v; want %d messages, %d resources, some copied by the first run", sum, spec.Messages, len(fx.Resources))
	}
	t.Logf("resumed migrate: %d of %d resources (%d of %d bytes) in %v", sum.ResourcesCopied, sum.Resources, sum.BytesCopied, sum.Bytes, elapsed)
	if d := backuptest.Diff(before, listDataDir(t, dir, pg, res)); d != "" {
		t.Errorf("after migrate: %s", d)
	}
	if got := listDataDir(t, dir, "", ""); backuptest.Diff(before, got) != "" {
		t.Errorf("migrate changed its source")
	}

	// A run from scratch into other stores, timed: the figure of
	// docs/BENCHMARKS.md.
	pg2, res2 := pgtest.URL(t), s3.URL()
	start = time.Now()
	full := summary(t, run(t, nil, "migrate", "--data", dir, "--to-meta", pg2, "--to-resources", res2, "--json"))
	elapsed = time.Since(start)
	if !full.Verified || full.ResourcesCopied != len(fx.Resources) || full.MessagesCopied != spec.Messages {
		t.Errorf("migrate into empty stores: %+v", full)
	}
	t.Logf("migrate of %d messages and %.1f MiB to PostgreSQL and S3: %v, %.1f MiB/s, %.0f messages/s (copy and verify, every resource read back)",
		full.Messages, float64(full.Bytes)/(1<<20), elapsed.Round(time.Millisecond), float64(full.Bytes)/(1<<20)/elapsed.Seconds(), float64(full.Messages)/elapsed.Seconds())

	// Backups of the domain, from either pair of stores: the first copies
	// everything, the second (nothing changed) no resource.
	for _, from := range []struct{ name, meta, res string }{{"SQLite and files", "", ""}, {"PostgreSQL and S3", pg, res}} {
		out := filepath.Join(t.TempDir(), "backup")
		for i, want := range []int{len(fx.Resources), 0} {
			start = time.Now()
			b := summary(t, run(t, nil, "backup", "--data", dir, "--meta", from.meta, "--resources", from.res, "--json", out))
			if !b.Verified || b.ResourcesCopied != want || b.Messages != spec.Messages {
				t.Errorf("backup %d: %+v; want %d resources copied", i+1, b, want)
			}
			t.Logf("backup %d of the domain on %s: %v, %d resources (%.1f MiB) copied", i+1, from.name,
				time.Since(start).Round(time.Millisecond), b.ResourcesCopied, float64(b.BytesCopied)/(1<<20))
		}
	}
}

// TestMigrateRefuses: a target holding another domain, and the source's
// own stores, are refused with their codes, and nothing is written.
func TestMigrateRefuses(t *testing.T) {
	ctx := t.Context()
	dir, other := t.TempDir(), t.TempDir()
	_, before := fillDataDir(t, dir, "", "", backuptest.Spec{Users: 2, Messages: 10, Bytes: 10 << 10, Seed: 1})
	run(t, nil, "user", "add", "--data", other, "--password", "correct horse battery", "zed@z.test")
	otherMeta := "sqlite:" + filepath.Join(other, "meta.db")
	code, errCode, stderr := runCode(t, ctx, "migrate", "--data", dir, "--to-meta", otherMeta, "--to-resources", "file:"+filepath.Join(other, "resources"), "--json")
	if code != 1 || errCode != codeNotEmpty || !strings.Contains(stderr, "refusing to mix two domains") {
		t.Errorf("migrate into another domain: exit %d, %q, %q", code, errCode, stderr)
	}
	if got := strings.Fields(run(t, nil, "user", "list", "--data", other)); len(got) != 2 || got[0] != "zed@z.test" {
		t.Errorf("the other domain after the refusal: %q", got)
	}
	code, errCode, _ = runCode(t, ctx, "migrate", "--data", dir, "--to-meta", "sqlite:"+filepath.Join(dir, "meta.db"), "--to-resources", "file:"+t.TempDir(), "--json")
	if code != 1 || errCode != codeSameStores {
		t.Errorf("migrate onto its own stores: exit %d, %q", code, errCode)
	}
	if d := backuptest.Diff(before, listDataDir(t, dir, "", "")); d != "" {
		t.Errorf("the refusals changed the source: %s", d)
	}
	// Into SQLite and files elsewhere, it works (any direction), with a
	// progress bar on a terminal.
	env, out, errb := testEnv(nil, true)
	to := t.TempDir()
	if code := Main(ctx, env, []string{"migrate", "--data", dir, "--to-meta", "sqlite:" + filepath.Join(to, "meta.db"), "--to-resources", "file:" + filepath.Join(to, "res")}); code != 0 {
		t.Fatalf("migrate to SQLite: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "verified: true") || !strings.Contains(errb.String(), "resources") {
		t.Errorf("migrate output %q, progress %q", out.String(), errb.String())
	}
	if d := backuptest.Diff(before, listDataDir(t, dir, "sqlite:"+filepath.Join(to, "meta.db"), "file:"+filepath.Join(to, "res"))); d != "" {
		t.Errorf("after migrate to SQLite: %s", d)
	}
}

// TestBackupRestore backs up a domain on each pair of backends, twice (the
// second copies no resource), restores it into new stores of the same
// kind, identical, and refuses a damaged backup without writing anything.
func TestBackupRestore(t *testing.T) {
	type backends struct{ meta, res string }
	tests := []struct {
		name string
		// setup starts what the backends need and returns a maker of
		// new, empty stores on it.
		setup func(t *testing.T) func() backends
	}{
		{"sqlite and files", func(t *testing.T) func() backends { return func() backends { return backends{} } }},
		{"postgres and s3", func(t *testing.T) func() backends {
			s3 := s3test.Start(t)
			t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
			t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
			return func() backends { return backends{pgtest.URL(t), s3.URL()} }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			open := tt.setup(t)
			from := open()
			dir, out := t.TempDir(), filepath.Join(t.TempDir(), "backup")
			spec := backuptest.Spec{Users: 3, Messages: 100, Bytes: 4 << 20, Seed: 3}
			fx, before := fillDataDir(t, dir, from.meta, from.res, spec)
			first := summary(t, run(t, nil, "backup", "--data", dir, "--meta", from.meta, "--resources", from.res, "--json", out))
			if !first.Verified || first.ResourcesCopied != len(fx.Resources) || first.BytesCopied != fx.Bytes {
				t.Errorf("first backup: %+v; want %d resources of %d bytes copied", first, len(fx.Resources), fx.Bytes)
			}
			second := summary(t, run(t, nil, "backup", "--data", dir, "--meta", from.meta, "--resources", from.res, "--json", "--verify-bytes", out))
			if !second.Verified || second.ResourcesCopied != 0 || second.BytesCopied != 0 || second.Messages != spec.Messages {
				t.Errorf("second backup: %+v; want no resource copied", second)
			}

			to := open()
			newDir := t.TempDir()
			restored := summary(t, run(t, nil, "restore", "--data", newDir, "--meta", to.meta, "--resources", to.res, "--json", out))
			if !restored.Verified || restored.Messages != spec.Messages || restored.ResourcesCopied != len(fx.Resources) {
				t.Errorf("restore: %+v", restored)
			}
			if d := backuptest.Diff(before, listDataDir(t, newDir, to.meta, to.res)); d != "" {
				t.Errorf("after restore: %s", d)
			}
			// Run again, it resumes (nothing to do) rather than refuse.
			again := summary(t, run(t, nil, "restore", "--data", newDir, "--meta", to.meta, "--resources", to.res, "--json", out))
			if again.MessagesCopied != 0 || again.ResourcesCopied != 0 || !again.Verified {
				t.Errorf("restore again: %+v", again)
			}
			// Into the source domain itself: refused.
			code, errCode, _ := runCode(t, ctx, "restore", "--data", dir, "--meta", from.meta, "--resources", from.res, "--json", out)
			if code != 1 || errCode != codeNotEmpty {
				t.Errorf("restore into a domain with users: exit %d, %q", code, errCode)
			}

			// A damaged backup: refused, naming the fault, the target untouched.
			var m backup.Manifest
			b, _ := os.ReadFile(filepath.Join(out, backup.ManifestFile))
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			id := string(m.Resources[len(m.Resources)/2].ID)
			blob := filepath.Join(out, backup.ResourcesDir, "blobs", id[:2], id)
			if err := os.Truncate(blob, 10); err != nil {
				t.Fatal(err)
			}
			fresh := filepath.Join(t.TempDir(), "fresh")
			code, errCode, stderr := runCode(t, ctx, "restore", "--data", fresh, "--json", out)
			if code != 1 || errCode != codeDamaged || !strings.Contains(stderr, id) {
				t.Errorf("restore of a damaged backup: exit %d, %q, %q", code, errCode, stderr)
			}
			if _, err := os.Stat(fresh); err == nil {
				t.Errorf("the refused restore made %s", fresh)
			}
			// The next backup finds the copy of the wrong size and copies
			// it again; the backup restores again.
			repaired := summary(t, run(t, nil, "backup", "--data", dir, "--meta", from.meta, "--resources", from.res, "--json", out))
			if repaired.ResourcesCopied != 1 {
				t.Errorf("backup after the damage copied %d resources, want 1", repaired.ResourcesCopied)
			}
			run(t, nil, "restore", "--data", fresh, "--json", out)
			if d := backuptest.Diff(before, listDataDir(t, fresh, "", "")); d != "" {
				t.Errorf("after the repaired restore: %s", d)
			}
		})
	}
}

// TestBackupRunningServer backs up a domain whose server is running while
// Alice keeps sending Bob attachments through it: the restore, into a new
// data directory, holds Bob's first k messages exactly (k at least those
// sent before the backup began, none missing in between, as of one
// instant), each as the source has it, every attachment whole.
func TestBackupRunningServer(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	for _, u := range []string{"alice@a.test", "bob@a.test"} {
		run(t, nil, "user", "add", "--data", data, "--password", "correct horse battery", u)
	}
	aliceTok := strings.TrimSpace(run(t, nil, "token", "create", "--data", data, "alice@a.test"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }, IsTerminal: func(any) bool { return false }}
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, env, []string{"serve", "--data", data, "--domain", "a.test", "--listen", "127.0.0.1:0", "--log-level", "warn"})
	}()
	serving := regexp.MustCompile(`pullmail serving a.test at (https://127.0.0.1:\d+)`)
	var url string
	for deadline := time.Now().Add(60 * time.Second); url == ""; {
		if m := serving.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %q %q", out.String(), errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	alice := map[string]string{"PULLMAIL_SERVER": url, "PULLMAIL_TOKEN": aliceTok, "PULLMAIL_CA": filepath.Join(data, "ca.pem")}

	var sent atomic.Int64
	stop := make(chan struct{})
	sending := make(chan error, 1)
	go func() {
		sending <- func() error {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return nil
				default:
				}
				f := filepath.Join(dir, fmt.Sprintf("file%03d.bin", i))
				if err := os.WriteFile(f, backuptest.Resource(uint64(i), 50_000+int64(i)), 0o600); err != nil {
					return err
				}
				env, _, errb := testEnv(alice, false)
				if code := Main(context.Background(), env, []string{"send", "--to", "bob@a.test", "--subject", fmt.Sprintf("n%03d", i), "--attach", f}); code != 0 {
					return fmt.Errorf("send %d: exit %d: %s", i, code, errb.String())
				}
				sent.Add(1)
			}
		}()
	}()
	for sent.Load() < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	before := sent.Load()
	backupDir := filepath.Join(dir, "backup")
	b := summary(t, run(t, nil, "backup", "--data", data, "--json", backupDir))
	for sent.Load() < before+3 { // more after the backup
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	if err := <-sending; err != nil {
		t.Fatal(err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve: exit %d: %s", code, errb.String())
	}

	restored := filepath.Join(dir, "restored")
	run(t, nil, "restore", "--data", restored, backupDir)
	src, got := listDataDir(t, data, "", ""), listDataDir(t, restored, "", "")
	inbox := got.Folders["bob@a.test inbox"]
	k := len(inbox)
	t.Logf("sent: %d before the backup, %d in it, %d in all", before, k, sent.Load())
	if int64(k) < before || int64(k) >= sent.Load() {
		t.Fatalf("the backup holds %d of Bob's messages; %d were sent before it, %d in all", k, before, sent.Load())
	}
	have := map[string]bool{}
	for _, lines := range got.Folders {
		for _, l := range lines {
			id, _, _ := strings.Cut(l, " ")
			have[id] = true
		}
	}
	// Alice's sent copies, and the draft of a send under way at the
	// instant, if one was.
	if b.Messages != len(have) || len(got.Folders["alice@a.test sent"]) != k {
		t.Errorf("restored %d messages (%d sent by Alice, %d received by Bob), the backup's summary says %d",
			len(have), len(got.Folders["alice@a.test sent"]), k, b.Messages)
	}
	// Every restored message as the source has it, but the draft of a
	// send under way at the instant: the server has sent it since.
	drafts := got.Folders["alice@a.test drafts"]
	if len(drafts) > 1 {
		t.Errorf("restored drafts: %q, want one under way at most", drafts)
	}
	for _, l := range drafts {
		id, _, _ := strings.Cut(l, " ")
		delete(have, id)
	}
	for key, lines := range src.Folders {
		var want []string
		for _, l := range lines {
			if id, _, _ := strings.Cut(l, " "); have[id] {
				want = append(want, l)
			}
		}
		if key == "alice@a.test drafts" {
			continue
		}
		if !slices.Equal(got.Folders[key], want) {
			t.Errorf("restored %s: %q, want %q", key, got.Folders[key], want)
		}
	}
	for i := range k { // Bob's first k, none missing: "n000" … newest first in the listing
		if want := fmt.Sprintf("%q", fmt.Sprintf("n%03d", k-1-i)); !strings.Contains(inbox[i], want) {
			t.Errorf("restored inbox line %d = %s, want subject %s", i, inbox[i], want)
		}
	}
}

// TestMigrateEncrypted: a domain whose resources are encrypted at rest
// stays encrypted in the target, under the same key.
func TestMigrateEncrypted(t *testing.T) {
	dir := t.TempDir()
	b, err := server.OpenBackends(t.Context(), dir, "", "", server.BackendOptions{EncryptAtRest: true})
	if err != nil {
		t.Fatal(err)
	}
	backuptest.Fill(t, b.Meta, b.Resources, backuptest.Spec{Users: 2, Messages: 20, Bytes: 1 << 20, Seed: 5})
	before := backuptest.List(t, b.Meta, b.Resources)
	b.Close()
	to := t.TempDir()
	toMeta, toRes := "sqlite:"+filepath.Join(to, "meta.db"), "file:"+filepath.Join(to, "res")
	if s := summary(t, run(t, nil, "migrate", "--data", dir, "--to-meta", toMeta, "--to-resources", toRes, "--json")); !s.Verified {
		t.Fatalf("migrate: %+v", s)
	}
	if enc, err := fsstore.Encrypted(filepath.Join(to, "res")); err != nil || !enc {
		t.Errorf("the target resources: encrypted %v, %v", enc, err)
	}
	if d := backuptest.Diff(before, listDataDir(t, dir, toMeta, toRes)); d != "" {
		t.Errorf("after migrate: %s", d)
	}
}
