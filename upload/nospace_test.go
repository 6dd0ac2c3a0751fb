package upload_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/upload"
	"github.com/pullmail/pullmail/upload/stagingtest"
)

// TestFSOutOfSpace runs FS on a 1 MiB tmpfs: an Append that fills it fails
// with an error errs.NoSpace recognises and gives back every byte it wrote,
// its checkpoints within the call included, so the disk is free again;
// earlier Appends stay; and the session goes on from where it was.
func TestFSOutOfSpace(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	stagingtest.SmallDisk(t, dir, 1<<20)
	s, err := upload.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.CheckpointBytes = 100 << 10 // several checkpoints before the disk is full
	data := make([]byte, 2<<20)
	rand.Read(data)
	now := time.Now()
	sess := upload.Session{ID: upload.NewID(), UserID: 1, Size: int64(len(data)), Created: now, Expires: now.Add(time.Hour)}
	if err := s.Create(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, sess.ID, 0, bytes.NewReader(data[:300<<10])); err != nil {
		t.Fatal(err)
	}
	kept := stagingtest.Used(t, dir)
	got, err := s.Append(ctx, sess.ID, 300<<10, bytes.NewReader(data[300<<10:]))
	if !errs.NoSpace(err) {
		t.Fatalf("Append on a full disk: %v, want ENOSPC", err)
	}
	if got.Offset != 300<<10 {
		t.Fatalf("the failed Append left the session at %d, want %d (as it found it)", got.Offset, 300<<10)
	}
	if n := stagingtest.Used(t, dir) - kept; n > 16<<10 {
		t.Fatalf("%d bytes of the failed Append still on the disk", n)
	}
	if cur, err := s.Get(ctx, sess.ID); err != nil || cur.Offset != 300<<10 {
		t.Fatalf("Get: %+v %v", cur, err)
	}
	// The session resumes from there once there is room.
	got, err = s.Append(ctx, sess.ID, 300<<10, bytes.NewReader(data[300<<10:600<<10]))
	if err != nil || got.Offset != 600<<10 {
		t.Fatalf("resumed Append: %+v %v", got, err)
	}
}
