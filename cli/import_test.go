package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/mailfile"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/postgres/pgtest"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/server"
)

// corpus reads mimeconv's corpus of messages.
func corpus(t *testing.T) [][]byte {
	t.Helper()
	files, _ := filepath.Glob("../mimeconv/testdata/corpus/*.eml")
	if len(files) < 20 {
		t.Fatalf("corpus: %d files", len(files))
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// writeMbox writes messages to an mbox file.
func writeMbox(t *testing.T, path string, msgs [][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := mailfile.NewMboxWriter(f)
	for i, m := range msgs {
		mw, err := w.Message(mailfile.FromLine("someone@example.org", time.Unix(1700000000+int64(i), 0)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mw.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// writeMaildir writes messages to a new Maildir, each with flags.
func writeMaildir(t *testing.T, dir string, msgs [][]byte, flags func(i int) mailfile.Flags) {
	t.Helper()
	w, err := mailfile.NewMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if _, err := w.Deliver(bytes.NewReader(m), flags(i), time.Unix(1700000000+int64(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
}

// runCLI runs the CLI and returns its exit status, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	env, out, errb := testEnv(nil, false)
	code := Main(context.Background(), env, args)
	return code, out.String(), errb.String()
}

// importJSON runs pullmail import --json.
func importJSON(t *testing.T, dir, addr, path string, extra ...string) (int, ImportSummary) {
	t.Helper()
	args := append([]string{"import", "--data", dir, "--json"}, extra...)
	code, out, errb := runCLI(t, append(args, addr, path)...)
	var s ImportSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("import --json: %v\n%s\n%s", err, out, errb)
	}
	return code, s
}

// digests counts messages by their SHA-256.
func digests(msgs [][]byte) map[[32]byte]int {
	m := map[[32]byte]int{}
	for _, b := range msgs {
		m[sha256.Sum256(b)]++
	}
	return m
}

// readMbox reads every message of an mbox file.
func readMbox(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := mailfile.NewMboxReader(f, mailfile.MboxRD, 0)
	var out [][]byte
	for {
		m, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
}

// readMaildirAll reads every message of a Maildir, with its flags.
func readMaildirAll(t *testing.T, dir string) ([][]byte, []mailfile.Flags) {
	t.Helper()
	ents, err := mailfile.ReadMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	var flags []mailfile.Flags
	for _, e := range ents {
		b, err := os.ReadFile(e.Path)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
		flags = append(flags, e.Flags)
	}
	return out, flags
}

// listAll lists every message of a user, of every folder, through the
// mailbox service.
func listAll(t *testing.T, dir, addr string) []mailbox.Message {
	t.Helper()
	ctx := context.Background()
	b, err := server.OpenBackends(ctx, dir, "", "", server.BackendOptions{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	u, err := b.Meta.UserByAddress(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	mbx := mailbox.New(mailbox.Config{Domain: "a.test", Meta: b.Meta, Resources: b.Resources})
	ctx = auth.WithPrincipal(ctx, auth.Principal{UserID: u.ID, Address: addr})
	fl, err := mbx.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []mailbox.Message
	for _, f := range fl.Folders {
		l, err := mbx.List(ctx, mailbox.ListOptions{Folder: f.Name})
		if err != nil || l.NextPage != "" {
			t.Fatalf("listing %s: %v (or more than a page)", f.Name, err)
		}
		out = append(out, l.Messages...)
	}
	return out
}

// TestImportExportCorpus: mimeconv's corpus, as an mbox file and as a
// Maildir, imported into a real data directory (SQLite and files) and
// exported again in both formats, comes out byte for byte; the Maildir's
// flags become the mailbox's state (S read, T trash) and come back.
func TestImportExportCorpus(t *testing.T) {
	dir := t.TempDir()
	msgs := corpus(t)
	runAdmin(t, "user", "add", "--data", dir, "alice@a.test", "--password", "long enough")
	runAdmin(t, "user", "add", "--data", dir, "bob@a.test", "--password", "long enough")
	src := t.TempDir()
	mbox := filepath.Join(src, "corpus.mbox")
	writeMbox(t, mbox, msgs)
	md := filepath.Join(src, "Maildir")
	writeMaildir(t, md, msgs, func(i int) mailfile.Flags {
		return mailfile.Flags{Seen: i%2 == 0, Trashed: i%5 == 0, Replied: i%3 == 0}
	})
	for _, tc := range []struct{ addr, path, format string }{{"alice@a.test", mbox, "mbox"}, {"bob@a.test", md, "maildir"}} {
		code, s := importJSON(t, dir, tc.addr, tc.path)
		if code != 0 || s.Imported != len(msgs) || s.Failed != 0 || s.Skipped != 0 || s.Format != tc.format {
			t.Fatalf("%s: exit %d, %+v; want %d imported", tc.format, code, s, len(msgs))
		}
	}
	want := digests(msgs)
	for _, addr := range []string{"alice@a.test", "bob@a.test"} {
		for _, format := range []string{"mbox", "maildir"} {
			out := filepath.Join(t.TempDir(), "export")
			// The form: flags after ADDRESS too.
			code, stdout, errb := runCLI(t, "export", "--data", dir, addr, "--format", format, out, "--json")
			if code != 0 {
				t.Fatalf("export %s %s: exit %d: %s", addr, format, code, errb)
			}
			var s ExportSummary
			if err := json.Unmarshal([]byte(stdout), &s); err != nil || s.Exported != len(msgs) {
				t.Fatalf("export %s %s: %+v (%v)", addr, format, s, err)
			}
			var got [][]byte
			var flags []mailfile.Flags
			if format == "mbox" {
				got = readMbox(t, out)
			} else {
				got, flags = readMaildirAll(t, out)
			}
			g := digests(got)
			for d, n := range want {
				if g[d] != n {
					t.Errorf("export %s %s: a corpus message %d times, want %d", addr, format, g[d], n)
				}
			}
			if len(got) != len(msgs) {
				t.Errorf("export %s %s: %d messages, want %d", addr, format, len(got), len(msgs))
			}
			if addr == "bob@a.test" && format == "maildir" {
				// Flags back: the message with the same bytes had them.
				byDigest := map[[32]byte]mailfile.Flags{}
				for i, b := range got {
					byDigest[sha256.Sum256(b)] = flags[i]
				}
				for i, m := range msgs {
					f := byDigest[sha256.Sum256(m)]
					if f.Seen != (i%2 == 0) || f.Trashed != (i%5 == 0) || f.Replied {
						t.Errorf("message %d: flags back %+v", i, f)
					}
				}
			}
		}
	}
	// The mailbox's state from the Maildir's flags.
	seen, trash := 0, 0
	for _, m := range listAll(t, dir, "bob@a.test") {
		if m.Seen {
			seen++
		}
		if m.Folder == string(meta.Trash) {
			trash++
		}
	}
	wantSeen, wantTrash := 0, 0
	for i := range msgs {
		if i%2 == 0 {
			wantSeen++
		}
		if i%5 == 0 {
			wantTrash++
		}
	}
	if seen != wantSeen || trash != wantTrash {
		t.Errorf("bob: %d read, %d in trash; want %d, %d", seen, trash, wantSeen, wantTrash)
	}
	// Run again: everything skipped (the mbox by its journal, the
	// Maildir by the digests).
	for _, tc := range []struct{ addr, path string }{{"alice@a.test", mbox}, {"bob@a.test", md}} {
		code, s := importJSON(t, dir, tc.addr, tc.path)
		if code != 0 || s.Imported != 0 || s.Failed != 0 {
			t.Errorf("%s again: exit %d, %+v; want nothing imported", tc.path, code, s)
		}
	}
	if n := len(listAll(t, dir, "alice@a.test")); n != len(msgs) {
		t.Errorf("alice has %d messages after a second import, want %d", n, len(msgs))
	}
}

// TestImportMboxStatus: mbox's Status and X-Status fields become the
// mailbox's state (R read, D trash), in the testdata vector too.
func TestImportMboxStatus(t *testing.T) {
	dir := t.TempDir()
	runAdmin(t, "user", "add", "--data", dir, "alice@a.test", "--password", "long enough")
	mbox := filepath.Join(t.TempDir(), "s.mbox")
	writeMbox(t, mbox, [][]byte{
		[]byte("Subject: read\nStatus: RO\n\nx\n"),
		[]byte("Subject: deleted\nStatus: O\nX-Status: D\n\nx\n"),
		[]byte("Subject: new\n\nx\n"),
	})
	if code, s := importJSON(t, dir, "alice@a.test", mbox); code != 0 || s.Imported != 3 {
		t.Fatalf("exit %d, %+v", code, s)
	}
	got := map[string]string{}
	for _, m := range listAll(t, dir, "alice@a.test") {
		got[m.Subject] = fmt.Sprintf("%s seen=%v", m.Folder, m.Seen)
	}
	want := map[string]string{"read": "inbox seen=true", "deleted": "trash seen=false", "new": "inbox seen=false"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	// A progress bar on a terminal's stderr only; quiet otherwise.
	mbox2 := filepath.Join(t.TempDir(), "p.mbox")
	writeMbox(t, mbox2, manyMessages(3))
	for _, term := range []bool{true, false} {
		env, out, errb := testEnv(nil, term)
		if code := Main(context.Background(), env, []string{"import", "--data", dir, "alice@a.test", mbox2}); code != 0 {
			t.Fatalf("import: exit %d: %s", code, errb)
		}
		if term != strings.Contains(errb.String(), "importing") {
			t.Errorf("terminal %v: stderr %q", term, errb)
		}
		if !strings.Contains(out.String(), "imported ") {
			t.Errorf("summary: %q", out)
		}
	}
	// The vector of mailfile's tests: From_ quoting undone, X-Status AF
	// (answered, flagged: no state here) leaves it unread but Status R.
	code, s := importJSON(t, dir, "alice@a.test", "../mailfile/testdata/mboxrd.mbox")
	if code != 0 || s.Imported != 2 {
		t.Fatalf("vector: exit %d, %+v", code, s)
	}
	code, s = importJSON(t, dir, "alice@a.test", "../mailfile/testdata/mboxo.mbox", "--mbox-variant", "mboxo")
	if code != 0 || s.Imported != 1 {
		t.Fatalf("mboxo vector: exit %d, %+v", code, s)
	}
	found := false
	for _, m := range listAll(t, dir, "alice@a.test") {
		if m.Subject == "o" {
			found = true
			b, err := server.OpenBackends(context.Background(), dir, "", "", server.BackendOptions{Shared: true})
			if err != nil {
				t.Fatal(err)
			}
			u, _ := b.Meta.UserByAddress(context.Background(), "alice@a.test")
			mbx := mailbox.New(mailbox.Config{Domain: "a.test", Meta: b.Meta, Resources: b.Resources})
			rc, err := mbx.Raw(auth.WithPrincipal(context.Background(), auth.Principal{UserID: u.ID, Address: "alice@a.test"}), m.ID)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(rc)
			rc.Close()
			b.Close()
			if want := "Subject: o\n\nFrom here\n>>From there\n"; string(raw) != want {
				t.Errorf("mboxo message: %q, want %q", raw, want)
			}
		}
	}
	if !found {
		t.Error("the mboxo message is not in the mailbox")
	}
	if code, _, errb := runCLI(t, "import", "--data", dir, "alice@a.test", mbox, "--mbox-variant", "mboxcl2"); code != 2 {
		t.Errorf("an unknown variant: exit %d: %s", code, errb)
	}
}

// TestImportDedupAttachments: the same attachment in two messages (and in a
// Maildir and an mbox) is stored once: the resource store grows by one
// copy of it.
func TestImportDedupAttachments(t *testing.T) {
	dir := t.TempDir()
	runAdmin(t, "user", "add", "--data", dir, "alice@a.test", "--password", "long enough")
	att := make([]byte, 2<<20)
	rand.Read(att)
	msg := func(subject string) []byte {
		b64 := base64.StdEncoding.EncodeToString(att)
		var lines []string
		for len(b64) > 76 {
			lines = append(lines, b64[:76])
			b64 = b64[76:]
		}
		lines = append(lines, b64)
		return []byte("Subject: " + subject + "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
			"--b\r\nContent-Type: text/plain\r\n\r\n" + subject + "\r\n--b\r\nContent-Type: application/octet-stream\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" + strings.Join(lines, "\r\n") + "\r\n--b--\r\n")
	}
	src := t.TempDir()
	mbox := filepath.Join(src, "a.mbox")
	writeMbox(t, mbox, [][]byte{msg("one"), msg("two")})
	md := filepath.Join(src, "Maildir")
	writeMaildir(t, md, [][]byte{msg("three")}, func(int) mailfile.Flags { return mailfile.Flags{} })
	before := dirSize(t, filepath.Join(dir, "resources"))
	for _, p := range []string{mbox, md} {
		if code, s := importJSON(t, dir, "alice@a.test", p); code != 0 || s.Imported == 0 {
			t.Fatalf("%s: exit %d, %+v", p, code, s)
		}
	}
	grew := dirSize(t, filepath.Join(dir, "resources")) - before
	if grew < int64(len(att)) || grew > int64(len(att))+int64(len(att))/4 {
		t.Errorf("the resources grew by %d bytes for three messages with one %d-byte attachment: want it stored once", grew, len(att))
	}
	ms := listAll(t, dir, "alice@a.test")
	if len(ms) != 3 {
		t.Fatalf("%d messages, want 3", len(ms))
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return n
}

// manyMessages makes n distinct small messages.
func manyMessages(n int) [][]byte {
	var out [][]byte
	for i := range n {
		out = append(out, fmt.Appendf(nil, "Subject: message %d\r\nMessage-ID: <m%d@example.org>\r\n\r\nFrom the body of %d\r\n", i, i, i))
	}
	return out
}

// TestImportResume interrupts an mbox import at a random message, runs it
// again (it carries on where it stopped) and again with its journal lost
// and a clock 30 days on (the digests, which do not expire, skip every
// message): every message is stored exactly once.
func TestImportResume(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	runAdmin(t, "user", "add", "--data", dir, "alice@a.test", "--password", "long enough")
	const n = 40
	msgs := manyMessages(n)
	mbox := filepath.Join(t.TempDir(), "m.mbox")
	writeMbox(t, mbox, msgs)
	stopAt := 1 + mrand.IntN(n-2)
	t.Logf("interrupting after %d of %d messages", stopAt, n)

	open := func(clock func() time.Time) (*server.Backends, ImportConfig) {
		b, err := server.OpenBackends(ctx, dir, "", "", server.BackendOptions{Shared: true})
		if err != nil {
			t.Fatal(err)
		}
		mbx := mailbox.New(mailbox.Config{Domain: "a.test", Meta: b.Meta, Resources: b.Resources, Clock: clock})
		return b, ImportConfig{Mailbox: mbx, Resources: b.Resources, Address: "alice@a.test", Path: mbox,
			JournalDir: filepath.Join(dir, "import")}
	}
	b, cfg := open(nil)
	cctx, cancel := context.WithCancel(ctx)
	count := 0
	cfg.Progress = func(done, total int64) {
		if count++; count == stopAt {
			cancel()
		}
	}
	s1, err := ImportMail(cctx, cfg)
	cancel()
	b.Close()
	if !errors.Is(err, context.Canceled) || s1.Imported != stopAt {
		t.Fatalf("interrupted run: %v, %+v; want canceled after %d", err, s1, stopAt)
	}
	code, s2 := importJSON(t, dir, "alice@a.test", mbox)
	if code != 0 || s2.ResumedAt == 0 || s2.Imported+s2.Skipped != n-stopAt || s2.Imported < n-stopAt-1 {
		t.Fatalf("resumed run: exit %d, %+v; want it to carry on with the last %d", code, s2, n-stopAt)
	}
	if got := len(listAll(t, dir, "alice@a.test")); got != n {
		t.Fatalf("%d messages after the resumed import, want %d", got, n)
	}
	// The journal lost, a month later: the digests skip every message.
	if err := os.RemoveAll(filepath.Join(dir, "import")); err != nil {
		t.Fatal(err)
	}
	b, cfg = open(func() time.Time { return time.Now().Add(30 * 24 * time.Hour) })
	s3, err := ImportMail(ctx, cfg)
	b.Close()
	if err != nil || s3.Imported != 0 || s3.Skipped != n || s3.SkippedReasons[skipImported] != n || s3.ResumedAt != 0 {
		t.Fatalf("run without a journal: %v, %+v; want all %d skipped as already imported", err, s3, n)
	}
	if got := len(listAll(t, dir, "alice@a.test")); got != n {
		t.Fatalf("%d messages after three runs, want %d", got, n)
	}
	// The file grown (a client appended mail): the journal still holds,
	// and only the new messages are read.
	more := manyMessages(n + 3)[n:]
	writeMbox(t, mbox, append(msgs, more...))
	code, s4 := importJSON(t, dir, "alice@a.test", mbox)
	if code != 0 || s4.ResumedAt == 0 || s4.Imported != 3 || s4.Skipped != 0 {
		t.Fatalf("appended file: exit %d, %+v; want the 3 new messages only", code, s4)
	}
	// The file rewritten before the journal's offset: read from the start.
	writeMbox(t, mbox, append([][]byte{[]byte("Subject: new first\r\n\r\nx\r\n")}, msgs...))
	code, s5 := importJSON(t, dir, "alice@a.test", mbox)
	if code != 0 || s5.ResumedAt != 0 || s5.Imported != 1 || s5.Skipped != n {
		t.Fatalf("rewritten file: exit %d, %+v; want 1 imported, %d skipped", code, s5, n)
	}
}

// TestImportBadInput: what cannot be imported fails with its reason, the
// import goes on, exits 1, and nothing of the failed messages is visible.
func TestImportBadInput(t *testing.T) {
	dir := t.TempDir()
	runAdmin(t, "user", "add", "--data", dir, "alice@a.test", "--password", "long enough")
	big := []byte("Subject: big\r\n\r\n" + strings.Repeat("x", 10000) + "\r\n")
	mbox := filepath.Join(t.TempDir(), "bad.mbox")
	writeMbox(t, mbox, [][]byte{[]byte("Subject: a\r\n\r\na\r\n"), big, []byte("Subject: b\r\n\r\nb\r\n")})
	code, s := importJSON(t, dir, "alice@a.test", mbox, "--max-size", "5000")
	if code != 1 || s.Imported != 2 || s.Failed != 1 || len(s.Failures) != 1 ||
		!strings.Contains(s.Failures[0].Reason, "max-size") || !strings.HasPrefix(s.Failures[0].Message, "offset ") {
		t.Fatalf("mbox: exit %d, %+v", code, s)
	}

	md := filepath.Join(t.TempDir(), "Maildir")
	writeMaildir(t, md, [][]byte{[]byte("Subject: c\r\n\r\nc\r\n"), big}, func(int) mailfile.Flags { return mailfile.Flags{} })
	if err := os.Symlink(filepath.Join(md, "nowhere"), filepath.Join(md, "cur", "1.dangling:2,S")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(md, "new", "2.adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	code, s = importJSON(t, dir, "alice@a.test", md, "--max-size", "5000")
	if code != 1 || s.Imported != 1 || s.Failed != 3 {
		t.Fatalf("maildir: exit %d, %+v", code, s)
	}
	reasons := map[string]string{}
	for _, f := range s.Failures {
		reasons[f.Message] = f.Reason
	}
	if r := reasons[filepath.Join("cur", "1.dangling:2,S")]; !strings.Contains(r, "opening the file") {
		t.Errorf("dangling link: %q", r)
	}
	if r := reasons[filepath.Join("new", "2.adir")]; r != "not a regular file" {
		t.Errorf("directory: %q", r)
	}
	var subjects []string
	for _, m := range listAll(t, dir, "alice@a.test") {
		subjects = append(subjects, m.Subject)
	}
	if len(subjects) != 3 || strings.Contains(strings.Join(subjects, ","), "big") {
		t.Errorf("stored: %q, want a, b, c", subjects)
	}
	// Not mail at all.
	notMbox := filepath.Join(t.TempDir(), "x")
	os.WriteFile(notMbox, []byte("Subject: x\n\nnot an mbox\n"), 0o600)
	if code, _, errb := runCLI(t, "import", "--data", dir, "alice@a.test", notMbox); code == 0 || !strings.Contains(errb, "not an mbox") {
		t.Errorf("not an mbox: exit %d: %s", code, errb)
	}
	if code, _, _ := runCLI(t, "import", "--data", dir, "nobody@a.test", mbox); code == 0 {
		t.Error("an unknown user: exit 0")
	}
}

// TestExportAtomic: an export that fails part way (a resource gone) leaves
// nothing at OUT, and nothing beside it.
func TestExportAtomic(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	runAdmin(t, "user", "add", "--data", dir, "alice@a.test", "--password", "long enough")
	mbox := filepath.Join(t.TempDir(), "m.mbox")
	msgs := manyMessages(5)
	msgs = append(msgs, []byte("Subject: att\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\n"+
		"Content-Transfer-Encoding: base64\r\n\r\nQUJDREVGR0g=\r\n--b--\r\n"))
	writeMbox(t, mbox, msgs)
	if code, s := importJSON(t, dir, "alice@a.test", mbox); code != 0 || s.Imported != 6 {
		t.Fatalf("import: exit %d, %+v", code, s)
	}
	b, err := server.OpenBackends(ctx, dir, "", "", server.BackendOptions{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	id := resource.IDOf([]byte("ABCDEFGH"))
	removed := false
	for _, m := range listAll(t, dir, "alice@a.test") {
		for _, a := range m.Attachments {
			if a.ContentID == id {
				removed = b.Resources.Remove(ctx, a.ContentID) == nil
			}
		}
	}
	b.Close()
	if !removed {
		t.Fatal("could not remove the attachment")
	}
	for _, format := range []string{"mbox", "maildir"} {
		outDir := t.TempDir()
		out := filepath.Join(outDir, "export")
		if code, _, _ := runCLI(t, "export", "--data", dir, "--format", format, "alice@a.test", out); code == 0 {
			t.Errorf("%s: exit 0 with a resource gone", format)
		}
		if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
			t.Errorf("%s: %d entries left in OUT's directory, want none", format, len(ents))
		}
	}
}

// TestImportExportPostgres: the same on PostgreSQL (a throwaway cluster):
// the corpus in by an mbox file, out byte for byte, and a second run
// stores nothing (the import records, under serializable transactions).
func TestImportExportPostgres(t *testing.T) {
	pg := pgtest.URL(t)
	dir := t.TempDir()
	msgs := corpus(t)
	runAdmin(t, "user", "add", "--data", dir, "--meta", pg, "alice@a.test", "--password", "long enough")
	mbox := filepath.Join(t.TempDir(), "corpus.mbox")
	writeMbox(t, mbox, msgs)
	for run, want := range []int{len(msgs), 0} {
		code, s := importJSON(t, dir, "alice@a.test", mbox, "--meta", pg)
		if code != 0 || s.Imported != want || s.Failed != 0 {
			t.Fatalf("run %d: exit %d, %+v; want %d imported", run, code, s, want)
		}
		if err := os.RemoveAll(filepath.Join(dir, "import")); err != nil { // the digests alone, the second time
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "out.mbox")
	if code, _, errb := runCLI(t, "export", "--data", dir, "--meta", pg, "alice@a.test", "--format", "mbox", out); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errb)
	}
	got, want := digests(readMbox(t, out)), digests(msgs)
	if len(got) != len(want) {
		t.Fatalf("%d distinct messages back, want %d", len(got), len(want))
	}
	for d, n := range want {
		if got[d] != n {
			t.Errorf("a corpus message back %d times, want %d", got[d], n)
		}
	}
}
