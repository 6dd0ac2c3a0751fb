package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/server"
	"github.com/pullmail/pullmail/testenv"
)

// runFsck runs pullmail fsck and returns its exit status and output.
func runFsck(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	env, out, errb := testEnv(nil, false)
	code := Main(context.Background(), env, append([]string{"fsck"}, args...))
	return code, out.String(), errb.String()
}

// fsckJSON runs pullmail fsck --json and decodes its report.
func fsckJSON(t *testing.T, args ...string) (int, fsckReport) {
	t.Helper()
	code, out, errb := runFsck(t, append(args, "--json")...)
	var rep fsckReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("fsck --json: %v\n%s\n%s", err, out, errb)
	}
	return code, rep
}

// TestFsck makes a real data directory (server.Open, a user, resources: one
// only uploaded, one named by a draft), damages a stored file, and checks
// that fsck reports it (with the message that names it) and exits 1, that
// --repair removes it, and what a second fsck then finds: nothing for the
// upload; the draft's resource missing until its owner uploads it again. The
// server stays open meanwhile, as in production.
func TestFsck(t *testing.T) {
	for _, enc := range []bool{false, true} {
		name := "plain"
		if enc {
			name = "encrypted"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			srv, err := server.Open(ctx, server.Config{DataDir: dir, Domain: "a.test", GCInterval: -1, EncryptAtRest: enc})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			var uid int64
			err = srv.Meta.Update(ctx, func(tx meta.Tx) error {
				u, err := tx.AddUser(ctx, meta.User{Address: "alice@a.test", PasswordHash: "x"})
				uid = u.ID
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			put := func(data []byte) resource.Info {
				info, err := srv.Store.Put(ctx, bytes.NewReader(data), resource.PutOptions{Size: -1})
				if err != nil {
					t.Fatal(err)
				}
				if err := srv.Meta.Update(ctx, func(tx meta.Tx) error {
					return tx.AddUpload(ctx, uid, meta.Ref{ID: info.ID, Size: info.Size})
				}); err != nil {
					t.Fatal(err)
				}
				return info
			}
			upload := put(bytes.Repeat([]byte("only uploaded "), 10000))
			attData := bytes.Repeat([]byte("named by a draft "), 10000)
			att := put(attData)
			err = srv.Meta.Update(ctx, func(tx meta.Tx) error {
				return tx.InsertMessage(ctx, meta.Message{ID: "draft1", UserID: uid, Folder: meta.Drafts, MessageID: "<d1@a.test>",
					Status: meta.StatusDraft, Created: time.Now(), Updated: time.Now(), Refs: []meta.Ref{{ID: att.ID, Size: att.Size}}})
			})
			if err != nil {
				t.Fatal(err)
			}

			if code, out, errb := runFsck(t, "--data", dir); code != 0 || !strings.Contains(out, "clean") {
				t.Fatalf("fsck of a sound directory: exit %d\n%s%s", code, out, errb)
			}

			off := int64(70000) // in the second chunk, plain or sealed
			testenv.DamageBlob(t, dir, string(upload.ID), off)
			testenv.DamageBlob(t, dir, string(att.ID), off)
			code, out, errb := runFsck(t, "--data", dir)
			if code != 1 || !strings.Contains(out, "damaged_resource "+string(upload.ID)) ||
				!strings.Contains(out, "damaged_resource "+string(att.ID)) ||
				!strings.Contains(out, "named by alice@a.test drafts/draft1 <d1@a.test> (draft)") ||
				!strings.Contains(errb, "2 problem(s) found") {
				t.Fatalf("fsck of damaged resources: exit %d\n%s%s", code, out, errb)
			}
			code, rep := fsckJSON(t, "--data", dir)
			if code != 1 || rep.Clean || len(rep.Findings) != 2 || rep.Resources != 2 || rep.Messages != 1 {
				t.Fatalf("fsck --json: exit %d, %+v", code, rep)
			}
			for _, f := range rep.Findings {
				if f.Kind != findDamaged || f.Repair != "" {
					t.Errorf("finding %+v, want damaged_resource, not repaired", f)
				}
				if f.Resource == att.ID && (len(f.Messages) != 1 || f.Messages[0].ID != "draft1" || f.Messages[0].User != "alice@a.test") {
					t.Errorf("the draft's resource: messages %+v, want draft1 of alice", f.Messages)
				}
			}

			code, rep = fsckJSON(t, "--data", dir, "--repair")
			if code != 1 || len(rep.Findings) != 2 {
				t.Fatalf("fsck --repair: exit %d, %+v", code, rep)
			}
			for _, f := range rep.Findings {
				want := "removed"
				if f.Resource == att.ID {
					want = "removed; no other domain is known to have it: its owner must upload it again"
				}
				if f.Repair != want {
					t.Errorf("repair of %s: %q, want %q", f.Resource, f.Repair, want)
				}
				if _, err := srv.Store.Stat(ctx, f.Resource); err == nil {
					t.Errorf("%s is still stored after --repair", f.Resource)
				}
			}

			// The draft still names what is gone.
			code, rep = fsckJSON(t, "--data", dir)
			if code != 1 || len(rep.Findings) != 1 || rep.Findings[0].Kind != findMissing || rep.Findings[0].Resource != att.ID ||
				len(rep.Findings[0].Messages) != 1 {
				t.Fatalf("fsck after --repair: exit %d, %+v", code, rep)
			}
			// Its owner uploads it again: clean.
			put(attData)
			if code, out, errb := runFsck(t, "--data", dir); code != 0 || !strings.Contains(out, "clean") {
				t.Fatalf("fsck after the upload again: exit %d\n%s%s", code, out, errb)
			}
		})
	}
}

// TestFsckDatabase: a row that names a missing row (written with foreign
// keys off, as a damaged or hand-edited database may have it) is reported.
func TestFsckDatabase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := server.Open(ctx, server.Config{DataDir: dir, Domain: "a.test", GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO message_refs (message_id, digest, size) VALUES ('nope', ?, 1)`, string(resource.EmptyID)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	code, rep := fsckJSON(t, "--data", dir)
	if code != 1 || len(rep.Findings) != 1 || rep.Findings[0].Kind != findDatabase ||
		!strings.Contains(rep.Findings[0].Detail, "message_refs") {
		t.Fatalf("fsck of a database with a dangling row: exit %d, %+v", code, rep)
	}
}

// TestFsckUsage: fsck refuses what is not a data directory, and changes
// nothing there.
func TestFsckUsage(t *testing.T) {
	empty := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"no --data", nil, 2},
		{"arguments", []string{"--data", empty, "extra"}, 2},
		{"not a data directory", []string{"--data", empty}, 1},
		{"missing", []string{"--data", filepath.Join(empty, "nope")}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, out, errb := runFsck(t, tt.args...); code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out, errb)
			}
		})
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("fsck made %v in a directory that is not a data directory", ents)
	}
}

// TestFsckRepull: bob@b.test's copy of a message from a.test completes; its
// attachment is damaged on b.test's disk; fsck --repair removes it and queues
// the pull again, and b.test's MTA fetches it again from a.test, so the copy
// completes once more with the right bytes and a further fsck is clean.
func TestFsckRepull(t *testing.T) {
	ctx := context.Background()
	_, dir, as, errb := startDev(t, "a.test,b.test", "alice@a.test,bob@b.test")
	alice, bob := as("alice@a.test"), as("bob@b.test")
	payload := make([]byte, 3<<16+5)
	rand.Read(payload)
	text, err := alice.Upload(ctx, strings.NewReader("See attached."), mailbox.UploadOptions{Size: 13})
	if err != nil {
		t.Fatal(err)
	}
	att, err := alice.Upload(ctx, bytes.NewReader(payload), mailbox.UploadOptions{Size: int64(len(payload))})
	if err != nil {
		t.Fatal(err)
	}
	m := placeholder.New("alice@a.test", []string{"bob@b.test"}, nil, nil, "Damage")
	tp, _ := placeholder.NewLeaf(text.ContentID, text.Size, "text/plain; charset=UTF-8", "inline", "")
	ap, _ := placeholder.NewLeaf(att.ContentID, att.Size, "application/octet-stream", "attachment", "data.bin")
	m.Parts = append(m.Parts, tp, ap)
	dr, err := alice.CreateDraft(ctx, m.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, dr.ID); err != nil {
		t.Fatal(err)
	}
	waitComplete := func() mailbox.Message {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			l, err := bob.List(ctx, mailbox.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Messages) == 1 && l.Messages[0].Status == "complete" {
				return l.Messages[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("bob's copy: %+v\n%s", l.Messages, errb.String())
			}
		}
	}
	got := waitComplete()

	bdir := filepath.Join(dir, "b.test")
	testenv.DamageBlob(t, bdir, string(att.ContentID), 2<<16+1)
	code, rep := fsckJSON(t, "--data", bdir, "--repair")
	if code != 1 || len(rep.Findings) != 1 || rep.Findings[0].Resource != att.ContentID ||
		rep.Findings[0].Repair != "removed; pulling it again from a.test" || len(rep.Findings[0].Messages) != 1 {
		t.Fatalf("fsck --repair: exit %d, %+v", code, rep)
	}

	got = waitComplete()
	rc, _, err := bob.Download(ctx, got.ID, att.ContentID)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(data, payload) {
		t.Fatalf("the attachment pulled again differs (%v)", err)
	}
	if code, out, errs := runFsck(t, "--data", bdir); code != 0 {
		t.Fatalf("fsck after the pull again: exit %d\n%s%s", code, out, errs)
	}
}
