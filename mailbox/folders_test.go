package mailbox_test

import (
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/testenv"
)

// folderOf returns the ids in a folder's listing.
func folderOf(t *testing.T, c mailbox.API, folder string) []string {
	t.Helper()
	l, err := c.List(ctx, mailbox.ListOptions{Folder: folder})
	if err != nil {
		t.Fatalf("list %s: %v", folder, err)
	}
	var ids []string
	for _, m := range l.Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

// TestFolders walks a received message through archive, junk, requests and
// trash and back over HTTPS, checking the listings, the counts, the feed
// and the refusals; a draft moves only to trash and back.
func TestFolders(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	bob := d.AddUser(t, "bob@a.test")
	text := upload(t, alice, []byte("hello"))
	dr, err := alice.CreateDraft(ctx, compose(t, "", []string{"bob@a.test"}, nil, nil, "s", text))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, dr.ID); err != nil {
		t.Fatal(err)
	}
	in := inbox(t, bob)
	if len(in) != 1 {
		t.Fatalf("bob's inbox = %v", in)
	}
	id := in[0].ID
	l, _ := bob.List(ctx, mailbox.ListOptions{})
	cursor := l.Cursor

	for _, to := range []string{"archive", "junk", "requests", "inbox", "archive"} {
		m, err := bob.Move(ctx, id, to)
		if err != nil || m.Folder != to {
			t.Fatalf("move to %s = %+v, %v", to, m, err)
		}
		if got := folderOf(t, bob, to); !slices.Equal(got, []string{id}) {
			t.Fatalf("%s = %v", to, got)
		}
	}
	if err := bob.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if got := folderOf(t, bob, "trash"); !slices.Equal(got, []string{id}) {
		t.Fatalf("trash = %v", got)
	}
	fl, err := bob.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fl.Folders {
		names = append(names, f.Name)
		want := 0
		if f.Name == "trash" {
			want = 1
		}
		if f.Total != want || f.Unseen != want {
			t.Errorf("folder %+v, want %d", f, want)
		}
	}
	if !slices.Equal(names, []string{"inbox", "drafts", "sent", "archive", "requests", "junk", "trash"}) {
		t.Errorf("folders = %v", names)
	}
	m, err := bob.Restore(ctx, id)
	if err != nil || m.Folder != "archive" {
		t.Fatalf("restore = %+v, %v: want archive, where it was deleted from", m, err)
	}
	_, err = bob.Restore(ctx, id)
	wantCode(t, err, "not_in_trash")
	wantCode(t, bob.Purge(ctx, id), "not_in_trash")

	// The feed tells every step: a move is deleted in one folder, created
	// in the other.
	ch, err := bob.Changes(ctx, cursor, 0)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, c := range ch.Changes {
		steps = append(steps, c.Kind+" "+c.Folder)
	}
	want := []string{"deleted inbox", "created archive", "deleted archive", "created junk", "deleted junk", "created requests",
		"deleted requests", "created inbox", "deleted inbox", "created archive", "deleted archive", "created trash",
		"deleted trash", "created archive"}
	if !slices.Equal(steps, want) {
		t.Errorf("changes = %v\nwant %v", steps, want)
	}

	tests := []struct {
		name, id, folder, code string
	}{
		{"unknown folder", id, "spam", "bad_folder"},
		{"into sent", id, "sent", "bad_folder"},
		{"into drafts", id, "drafts", "bad_folder"},
		{"no such message", "nope", "archive", "not_found"},
		{"another user's message", dr.ID, "archive", "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bob.Move(ctx, tt.id, tt.folder)
			wantCode(t, err, tt.code)
		})
	}
	wantCode(t, bob.Delete(ctx, dr.ID), "not_found")
	wantCode(t, bob.Purge(ctx, dr.ID), "not_found")

	// A draft goes to trash and back to drafts, nowhere else.
	d2, err := alice.CreateDraft(ctx, compose(t, "", []string{"bob@a.test"}, nil, nil, "draft", text))
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.Move(ctx, d2.ID, "archive")
	wantCode(t, err, "not_movable")
	if _, err := alice.Move(ctx, d2.ID, "trash"); err != nil {
		t.Fatal(err)
	}
	_, err = alice.Move(ctx, d2.ID, "inbox")
	wantCode(t, err, "not_movable")
	if m, err := alice.Restore(ctx, d2.ID); err != nil || m.Folder != "drafts" || m.Status != "draft" {
		t.Fatalf("restored draft = %+v, %v", m, err)
	}
	if err := alice.Purge(ctx, d2.ID); err != nil {
		t.Fatalf("purging a draft: %v", err)
	}
	if _, err := alice.Get(ctx, d2.ID); err == nil {
		t.Fatal("purged draft still there")
	}
}

// TestTrashSweep: with a fake clock, a message trashed 30 days ago is
// purged by the sweep and its resource then collected; one trashed later
// stays, and so does the resource a sent copy still names.
func TestTrashSweep(t *testing.T) {
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	clock := func() time.Time { return *now.Load() }
	advance := func(d time.Duration) { n := clock().Add(d); now.Store(&n) }
	d := testenv.Start(t, "a.test", testenv.Options{Clock: clock})
	alice := d.AddUser(t, "alice@a.test")
	only := upload(t, alice, []byte("only in the old draft"))
	shared := upload(t, alice, []byte("in a draft and a sent message"))
	old, err := alice.CreateDraft(ctx, compose(t, "", []string{"alice@a.test"}, nil, nil, "old", only))
	if err != nil {
		t.Fatal(err)
	}
	sent, err := alice.CreateDraft(ctx, compose(t, "", []string{"alice@a.test"}, nil, nil, "sent", shared))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, sent.ID); err != nil {
		t.Fatal(err)
	}
	recent, err := alice.CreateDraft(ctx, compose(t, "", []string{"alice@a.test"}, nil, nil, "recent", shared))
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Delete(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	advance(meta.TrashRetention / 2)
	if err := alice.Delete(ctx, recent.ID); err != nil {
		t.Fatal(err)
	}
	svc := d.Server.Mailbox
	if n, err := svc.SweepTrash(ctx); err != nil || n != 0 {
		t.Fatalf("early sweep purged %d: %v", n, err)
	}
	advance(meta.TrashRetention/2 + time.Minute)
	if n, err := svc.SweepTrash(ctx); err != nil || n != 1 {
		t.Fatalf("sweep purged %d, want 1: %v", n, err)
	}
	if got := folderOf(t, alice, "trash"); !slices.Equal(got, []string{recent.ID}) {
		t.Fatalf("trash after the sweep = %v, want only %s", got, recent.ID)
	}
	if _, err := svc.CollectGarbage(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Server.Store.Stat(ctx, only.ContentID); !errors.Is(err, resource.ErrNotFound) {
		t.Fatalf("the purged draft's resource is still stored: %v", err)
	}
	if _, err := d.Server.Store.Stat(ctx, shared.ContentID); err != nil {
		t.Fatalf("a resource still referenced was removed: %v", err)
	}
	advance(meta.TrashRetention)
	if n, err := svc.SweepTrash(ctx); err != nil || n != 1 {
		t.Fatalf("second sweep purged %d: %v", n, err)
	}
}

// TestUserFolders: a folder of the user's own is added, takes messages
// like archive (listing, paging, counts), refuses to go while it holds any,
// and a message trashed from it after it went is restored to inbox.
func TestUserFolders(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	bob := d.AddUser(t, "bob@a.test")
	text := upload(t, alice, []byte("hello"))
	for range 3 {
		dr, err := alice.CreateDraft(ctx, compose(t, "", []string{"bob@a.test"}, nil, nil, "s", text))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Send(ctx, dr.ID); err != nil {
			t.Fatal(err)
		}
	}
	in := inbox(t, bob)
	const trips = "Re: trips + 100%"
	if f, err := bob.CreateFolder(ctx, trips); err != nil || f.Name != trips || f.System {
		t.Fatalf("create = %+v, %v", f, err)
	}
	if _, err := bob.CreateFolder(ctx, "Bills"); err != nil {
		t.Fatal(err)
	}
	bad := []struct{ name, code string }{
		{"re: TRIPS + 100%", "folder_exists"},
		{"Inbox", "bad_folder_name"},
		{"a/b", "bad_folder_name"},
		{"", "bad_folder_name"},
		{"x\u202e", "bad_folder_name"},
	}
	for _, tt := range bad {
		_, err := bob.CreateFolder(ctx, tt.name)
		wantCode(t, err, tt.code)
	}
	// Alice does not see Bob's folder.
	_, err := alice.Move(ctx, in[0].ID, trips)
	wantCode(t, err, "not_found")
	_, err = alice.List(ctx, mailbox.ListOptions{Folder: trips})
	wantCode(t, err, "bad_folder")

	for _, m := range in {
		if moved, err := bob.Move(ctx, m.ID, trips); err != nil || moved.Folder != trips {
			t.Fatalf("move = %+v, %v", moved, err)
		}
	}
	// Paging through a user folder whose name holds ':', '+' and '%'.
	var paged []string
	opt := mailbox.ListOptions{Folder: trips, Limit: 2}
	for {
		l, err := bob.List(ctx, opt)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range l.Messages {
			paged = append(paged, m.ID)
		}
		if l.NextPage == "" {
			break
		}
		opt.Page = l.NextPage
	}
	if len(paged) != 3 {
		t.Fatalf("paged %v", paged)
	}
	fl, err := bob.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fl.Folders {
		names = append(names, f.Name)
		if f.System != (f.Name != trips && f.Name != "Bills") {
			t.Errorf("folder %+v: system wrong", f)
		}
		if f.Name == trips && (f.Total != 3 || f.Unseen != 3) {
			t.Errorf("folder %+v, want 3 unseen", f)
		}
	}
	if want := []string{"inbox", "drafts", "sent", "archive", "requests", "junk", "trash", "Bills", trips}; !slices.Equal(names, want) {
		t.Errorf("folders = %v, want %v", names, want)
	}

	wantCode(t, bob.DeleteFolder(ctx, trips), "folder_not_empty")
	wantCode(t, bob.DeleteFolder(ctx, "inbox"), "bad_folder")
	wantCode(t, bob.DeleteFolder(ctx, "nope"), "not_found")
	if _, err := bob.Move(ctx, in[0].ID, "archive"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Move(ctx, in[1].ID, "inbox"); err != nil {
		t.Fatal(err)
	}
	if err := bob.Delete(ctx, in[2].ID); err != nil {
		t.Fatal(err)
	}
	if err := bob.DeleteFolder(ctx, trips); err != nil {
		t.Fatalf("deleting the emptied folder: %v", err)
	}
	if m, err := bob.Restore(ctx, in[2].ID); err != nil || m.Folder != "inbox" {
		t.Fatalf("restore after its folder went = %+v, %v; want inbox", m, err)
	}
	_, err = bob.Move(ctx, in[0].ID, trips)
	wantCode(t, err, "bad_folder")
	_, err = bob.List(ctx, mailbox.ListOptions{Folder: trips})
	wantCode(t, err, "bad_folder")
}
