package server_test

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/testenv"
)

// TestTrashSweepLoop: the server's own background loop purges a message
// that has been in trash longer than meta.TrashRetention by the server's
// clock, and collects the resource only it named; nobody calls the sweep.
func TestTrashSweepLoop(t *testing.T) {
	ctx := context.Background()
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	d := testenv.Start(t, "a.test", testenv.Options{Clock: func() time.Time { return *now.Load() }, GCInterval: 20 * time.Millisecond})
	alice := d.AddUser(t, "alice@a.test")
	body := []byte("words nobody else holds")
	up, err := alice.Upload(ctx, bytes.NewReader(body), mailbox.UploadOptions{Size: int64(len(body))})
	if err != nil {
		t.Fatal(err)
	}
	m := placeholder.New("", []string{"alice@a.test"}, nil, nil, "to be swept")
	m.Header.Del(placeholder.HFrom)
	leaf, err := placeholder.NewLeaf(up.ContentID, up.Size, "text/plain; charset=UTF-8", "inline", "")
	if err != nil {
		t.Fatal(err)
	}
	m.Parts = append(m.Parts, leaf)
	dr, err := alice.CreateDraft(ctx, m.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Delete(ctx, dr.ID); err != nil {
		t.Fatal(err)
	}
	// Many ticks at the start time: a message trashed now stays.
	time.Sleep(200 * time.Millisecond)
	if got, err := alice.Get(ctx, dr.ID); err != nil || got.Folder != "trash" {
		t.Fatalf("a message trashed just now: %+v, %v", got, err)
	}
	later := start.Add(meta.TrashRetention + time.Hour)
	now.Store(&later)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, gerr := alice.Get(ctx, dr.ID)
		_, serr := d.Server.Store.Stat(ctx, up.ContentID)
		if gerr != nil && errors.Is(serr, resource.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("31 days on, the loop has not swept: get %v, stat %v", gerr, serr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fl, err := alice.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fl.Folders {
		if f.Total != 0 {
			t.Errorf("folder %+v after the sweep", f)
		}
	}
}
