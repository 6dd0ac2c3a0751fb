package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/backup"
	"github.com/pullmail/pullmail/backup/backuptest"
	"github.com/pullmail/pullmail/meta"
	metamem "github.com/pullmail/pullmail/meta/memstore"
	"github.com/pullmail/pullmail/meta/sqlite"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/fsstore"
	resmem "github.com/pullmail/pullmail/resource/memstore"
)

func memStores(t *testing.T) backup.Stores {
	s := backup.Stores{Meta: metamem.New(), Resources: resmem.New()}
	t.Cleanup(func() { s.Meta.Close() })
	return s
}

// diskStores opens SQLite and files in dir, as a data directory has them;
// shared opens them beside another process's (the server's).
func diskStores(t *testing.T, dir string, shared bool) backup.Stores {
	t.Helper()
	ms, err := sqlite.Open(t.Context(), filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := fsstore.New(filepath.Join(dir, "resources"), fsstore.Options{Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close(); rs.Close() })
	return backup.Stores{Meta: ms, Resources: rs}
}

var small = backuptest.Spec{Users: 3, Messages: 60, Bytes: 2 << 20, Seed: 1}

// TestCopy copies between every pair of kinds: the copy lists the same to
// every user, holds every resource, keeps no running job, starts a new
// change feed, and a second run copies nothing.
func TestCopy(t *testing.T) {
	tests := []struct {
		name     string
		src, dst func(t *testing.T) backup.Stores
	}{
		{"memory to memory", memStores, memStores},
		{"sqlite to memory", func(t *testing.T) backup.Stores { return diskStores(t, t.TempDir(), false) }, memStores},
		{"memory to sqlite", memStores, func(t *testing.T) backup.Stores { return diskStores(t, t.TempDir(), false) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			src, dst := tt.src(t), tt.dst(t)
			fx := backuptest.Fill(t, src.Meta, src.Resources, small)
			sum, err := backup.Copy(ctx, src, dst, backup.Options{Verify: true, VerifyBytes: true, Batch: 7})
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			if !sum.Verified || sum.Messages != small.Messages || sum.MessagesCopied != small.Messages ||
				sum.Resources != len(fx.Resources) || sum.ResourcesCopied != len(fx.Resources) || sum.BytesCopied != fx.Bytes ||
				sum.Users != len(fx.Users) || sum.Jobs != 4 {
				t.Errorf("summary %+v; want %d messages, %d resources of %d bytes", sum, small.Messages, len(fx.Resources), fx.Bytes)
			}
			if d := backuptest.Diff(backuptest.List(t, src.Meta, src.Resources), backuptest.List(t, dst.Meta, dst.Resources)); d != "" {
				t.Errorf("the copy differs: %s", d)
			}
			jobs, err := dst.Meta.Jobs(ctx, "", 0)
			if err != nil || len(jobs) != 4 {
				t.Fatalf("jobs in the copy: %d, %v", len(jobs), err)
			}
			for _, j := range jobs {
				if j.State == meta.JobRunning || j.Holder != "" {
					t.Errorf("job %q is %s by %q in the copy", j.Key, j.State, j.Holder)
				}
			}
			srcCursor, _ := src.Meta.Cursor(ctx)
			if _, err := dst.Meta.Changes(ctx, fx.Users[0].ID, srcCursor, 0); !errors.Is(err, meta.ErrCursorGone) {
				t.Errorf("a source cursor on the copy: %v, want cursor gone", err)
			}

			again, err := backup.Copy(ctx, src, dst, backup.Options{Verify: true})
			if err != nil || again.MessagesCopied != 0 || again.ResourcesCopied != 0 || !again.Verified {
				t.Errorf("second Copy: %+v, %v; want nothing copied, verified", again, err)
			}
		})
	}
}

// TestCopyInterrupted cancels a copy in each phase; running it again
// completes it, copying no resource and no message twice.
func TestCopyInterrupted(t *testing.T) {
	for _, phase := range []backup.Phase{backup.PhaseResources, backup.PhaseMessages} {
		t.Run(string(phase), func(t *testing.T) {
			src := memStores(t)
			dst := diskStores(t, t.TempDir(), false)
			fx := backuptest.Fill(t, src.Meta, src.Resources, small)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			first, err := backup.Copy(ctx, src, dst, backup.Options{Batch: 10, Verify: true, Progress: func(p backup.Phase, done, total int64) {
				if p == phase && done >= total/2 {
					cancel()
				}
			}})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted Copy: %v, want canceled", err)
			}
			if phase == backup.PhaseResources && (first.ResourcesCopied == 0 || first.ResourcesCopied >= len(fx.Resources)) {
				t.Fatalf("interrupted Copy stored %d of %d resources", first.ResourcesCopied, len(fx.Resources))
			}
			if phase == backup.PhaseMessages && (first.MessagesCopied == 0 || first.MessagesCopied >= small.Messages) {
				t.Fatalf("interrupted Copy wrote %d of %d messages", first.MessagesCopied, small.Messages)
			}
			second, err := backup.Copy(t.Context(), src, dst, backup.Options{Batch: 10, Verify: true, VerifyBytes: true})
			if err != nil || !second.Verified {
				t.Fatalf("resumed Copy: %+v, %v", second, err)
			}
			if got := first.ResourcesCopied + second.ResourcesCopied; got != len(fx.Resources) {
				t.Errorf("resources stored: %d then %d, want %d in all", first.ResourcesCopied, second.ResourcesCopied, len(fx.Resources))
			}
			if got := first.MessagesCopied + second.MessagesCopied; got != small.Messages {
				t.Errorf("messages written: %d then %d, want %d in all", first.MessagesCopied, second.MessagesCopied, small.Messages)
			}
			if d := backuptest.Diff(backuptest.List(t, src.Meta, src.Resources), backuptest.List(t, dst.Meta, dst.Resources)); d != "" {
				t.Errorf("the copy differs: %s", d)
			}
		})
	}
}

// TestVerifyFindsDifference: a target changed after a copy fails the next
// run's verification, naming what differs.
func TestVerifyFindsDifference(t *testing.T) {
	ctx := t.Context()
	src, dst := memStores(t), memStores(t)
	fx := backuptest.Fill(t, src.Meta, src.Resources, small)
	if _, err := backup.Copy(ctx, src, dst, backup.Options{}); err != nil {
		t.Fatal(err)
	}
	m, err := dst.Meta.Message(ctx, fx.Users[0].ID, "msg-000000")
	if err != nil {
		t.Fatal(err)
	}
	m.Seen = !m.Seen
	if err := dst.Meta.Update(ctx, func(tx meta.Tx) error { return tx.UpdateMessage(ctx, m) }); err != nil {
		t.Fatal(err)
	}
	_, err = backup.Copy(ctx, src, dst, backup.Options{Verify: true})
	if !errors.Is(err, backup.ErrVerify) || !strings.Contains(err.Error(), "msg-000000") {
		t.Errorf("Copy into a changed target: %v, want a difference at msg-000000", err)
	}
}

// TestBackupWhileWriting backs a domain up while a writer (another store
// on the same files, as the server is) keeps storing resources and
// messages; the restore holds exactly the messages of one instant (the
// writer's first k, none missing in between), each as the source has it,
// with its bytes. A second backup copies only the resources written since
// the first, a third none.
func TestBackupWhileWriting(t *testing.T) {
	ctx := t.Context()
	data := t.TempDir()
	server := diskStores(t, data, false)
	fx := backuptest.Fill(t, server.Meta, server.Resources, small)
	user := fx.Users[0].ID

	var written atomic.Int64
	var sizes sync.Map // message ID → its resource's size
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return nil
				default:
				}
				n := int64(8<<10 + i)
				b := backuptest.Resource(uint64(1000+i), n)
				info, err := server.Resources.Put(ctx, bytes.NewReader(b), resource.PutOptions{Size: n})
				if err != nil {
					return err
				}
				id := fmt.Sprintf("w%06d", i)
				now := time.Now()
				err = server.Meta.Update(ctx, func(tx meta.Tx) error {
					return tx.InsertMessage(ctx, meta.Message{ID: id, UserID: user, Folder: meta.Inbox, MessageID: "<" + id + "@b.test>",
						Status: meta.StatusComplete, Subject: id, Date: now, Placeholder: []byte(`{}`), Refs: []meta.Ref{{ID: info.ID, Size: n}}})
				})
				if err != nil {
					return err
				}
				sizes.Store(id, n)
				written.Add(1)
			}
		}()
	}()
	for written.Load() < 20 {
		time.Sleep(time.Millisecond)
	}
	before := written.Load()
	out := t.TempDir()
	m, err := backup.Backup(ctx, diskStores(t, data, true), out, backup.BackupOptions{Source: "test"})
	if err != nil {
		close(stop)
		t.Fatalf("Backup: %v", err)
	}
	for written.Load() < before+int64(m.Summary.Messages-small.Messages)+20 { // some more after the snapshot
		time.Sleep(time.Millisecond)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("writer: %v", err)
	}
	total := int(written.Load())
	k := m.Summary.Messages - small.Messages
	t.Logf("the writer's messages: %d before the backup, %d in its snapshot, %d in all", before, k, total)
	if int64(k) < before || k >= total {
		t.Fatalf("the backup holds %d of the writer's messages; %d were written before it began, %d in all", k, before, total)
	}

	dst := diskStores(t, t.TempDir(), false)
	sum, err := backup.Restore(ctx, out, dst, backup.RestoreOptions{Scratch: t.TempDir()})
	if err != nil || !sum.Verified || sum.Messages != m.Summary.Messages {
		t.Fatalf("Restore: %+v, %v", sum, err)
	}
	got, err := dst.Meta.Messages(ctx, user, meta.ListOptions{Folder: meta.Inbox})
	if err != nil {
		t.Fatal(err)
	}
	var ws []string
	for _, msg := range got {
		if strings.HasPrefix(msg.ID, "w") {
			ws = append(ws, msg.ID)
		}
	}
	slices.Sort(ws)
	for i, id := range ws {
		if want := fmt.Sprintf("w%06d", i); id != want {
			t.Fatalf("restored writer message %d is %s, want %s: not one instant", i, id, want)
		}
	}
	if len(ws) != k {
		t.Fatalf("restored %d writer messages, the manifest says %d", len(ws), k)
	}
	// Every restored message as the source has it.
	srcList, dstList := backuptest.List(t, server.Meta, server.Resources), backuptest.List(t, dst.Meta, dst.Resources)
	for key, lines := range dstList.Folders {
		var want []string
		for _, l := range srcList.Folders[key] {
			id, _, _ := strings.Cut(l, " ")
			if !strings.HasPrefix(id, "w") || id < fmt.Sprintf("w%06d", k) {
				want = append(want, l)
			}
		}
		if !slices.Equal(lines, want) {
			t.Errorf("restored %s: %d messages, the source had %d of the instant", key, len(lines), len(want))
		}
	}

	second, err := backup.Backup(ctx, diskStores(t, data, true), out, backup.BackupOptions{})
	if err != nil {
		t.Fatalf("second Backup: %v", err)
	}
	var newBytes int64
	for i := k; i < total; i++ {
		n, _ := sizes.Load(fmt.Sprintf("w%06d", i))
		newBytes += n.(int64)
	}
	if s := second.Summary; s.ResourcesCopied != total-k || s.BytesCopied != newBytes || s.Messages != small.Messages+total {
		t.Errorf("second backup copied %d resources (%d bytes) of %d messages; want the %d new ones (%d bytes)",
			s.ResourcesCopied, s.BytesCopied, s.Messages, total-k, newBytes)
	}
	third, err := backup.Backup(ctx, diskStores(t, data, true), out, backup.BackupOptions{})
	if err != nil || third.Summary.ResourcesCopied != 0 || third.Summary.BytesCopied != 0 {
		t.Errorf("third backup of an unchanged domain: %+v, %v; want no resource copied", third.Summary, err)
	}
	metas, _ := filepath.Glob(filepath.Join(out, "meta-*"))
	if len(metas) != 1 || filepath.Base(metas[0]) != third.Meta.File {
		t.Errorf("snapshots left in the backup: %v, want only %s", metas, third.Meta.File)
	}
}

// TestRestoreRefusesDamaged: every kind of damaged or partial backup is
// refused with ErrDamaged, naming the fault, and the target stays empty.
func TestRestoreRefusesDamaged(t *testing.T) {
	ctx := t.Context()
	src := memStores(t)
	backuptest.Fill(t, src.Meta, src.Resources, small)
	good := t.TempDir()
	m, err := backup.Backup(ctx, src, good, backup.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	blob := func(dir string, i int) string {
		id := string(m.Resources[i].ID)
		return filepath.Join(dir, backup.ResourcesDir, "blobs", id[:2], id)
	}
	editManifest := func(dir string, fn func(map[string]any)) {
		p := filepath.Join(dir, backup.ManifestFile)
		b, _ := os.ReadFile(p)
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		fn(v)
		b, _ = json.Marshal(v)
		os.WriteFile(p, b, 0o600)
	}
	flip := func(path string, at int64) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[min(at, int64(len(b)-1))] ^= 1
		os.WriteFile(path, b, 0o600)
	}
	tests := []struct {
		name   string
		damage func(dir string)
		want   string
	}{
		{"no manifest", func(d string) { os.Remove(filepath.Join(d, backup.ManifestFile)) }, "has no manifest.json"},
		{"manifest not JSON", func(d string) { os.WriteFile(filepath.Join(d, backup.ManifestFile), []byte("{"), 0o600) }, "manifest.json"},
		{"another format", func(d string) { editManifest(d, func(v map[string]any) { v["format"] = "pullmail-backup 9" }) }, "format"},
		{"snapshot missing", func(d string) { os.Remove(filepath.Join(d, m.Meta.File)) }, "is missing"},
		{"snapshot changed", func(d string) { flip(filepath.Join(d, m.Meta.File), 5000) }, "SHA-256"},
		{"resource missing", func(d string) { os.Remove(blob(d, 3)) }, "is missing"},
		{"resource damaged", func(d string) { flip(blob(d, 4), 100) }, string(m.Resources[4].ID)},
		{"resource unlisted", func(d string) {
			editManifest(d, func(v map[string]any) { v["resources"] = v["resources"].([]any)[1:] })
		}, "does not list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
				t.Fatal(err)
			}
			tt.damage(dir)
			dst := memStores(t)
			_, err := backup.Restore(ctx, dir, dst, backup.RestoreOptions{Scratch: t.TempDir()})
			if !errors.Is(err, backup.ErrDamaged) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Restore: %v; want ErrDamaged saying %q", err, tt.want)
			}
			if us, _ := dst.Meta.Users(ctx); len(us) != 0 {
				t.Errorf("the refused restore wrote %d users", len(us))
			}
			n := 0
			dst.Resources.Enumerate(ctx, func(resource.Info) error { n++; return nil })
			if n != 0 {
				t.Errorf("the refused restore stored %d resources", n)
			}
		})
	}
	// The intact backup restores.
	dst := memStores(t)
	if _, err := backup.Restore(ctx, good, dst, backup.RestoreOptions{Scratch: t.TempDir()}); err != nil {
		t.Fatalf("Restore of the intact backup: %v", err)
	}
	if d := backuptest.Diff(backuptest.List(t, src.Meta, src.Resources), backuptest.List(t, dst.Meta, dst.Resources)); d != "" {
		t.Errorf("the restore differs: %s", d)
	}
}

// TestBackupGarbageCollected: when garbage collection removes a resource
// the snapshot references (its message deleted since), Backup takes a new
// snapshot, which no longer names it, and succeeds.
func TestBackupGarbageCollected(t *testing.T) {
	ctx := t.Context()
	src := memStores(t)
	fx := backuptest.Fill(t, src.Meta, src.Resources, small)
	victim, err := src.Meta.Message(ctx, fx.Users[1].ID, "msg-000001")
	if err != nil {
		t.Fatal(err)
	}
	gone := victim.Refs[0].ID
	var collected atomic.Bool
	m, err := backup.Backup(ctx, src, t.TempDir(), backup.BackupOptions{Options: backup.Options{
		Progress: func(p backup.Phase, done, total int64) {
			if p == backup.PhaseResources && done == 0 && collected.CompareAndSwap(false, true) {
				// As the server would: the message deleted, then its
				// resource condemned and removed by the collector.
				if err := src.Meta.Update(ctx, func(tx meta.Tx) error { return tx.DeleteMessage(ctx, victim.UserID, victim.ID) }); err != nil {
					t.Error(err)
				}
				if err := src.Resources.Remove(ctx, gone); err != nil {
					t.Error(err)
				}
			}
		}}})
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if m.Summary.Messages != small.Messages-1 {
		t.Errorf("the backup holds %d messages, want the %d of the second snapshot", m.Summary.Messages, small.Messages-1)
	}
	for _, r := range m.Resources {
		if r.ID == gone {
			t.Errorf("the manifest lists the collected resource %s", gone)
		}
	}
}
