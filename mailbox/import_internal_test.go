package mailbox

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/mimeconv"
	"github.com/pullmail/pullmail/resource"
)

// TestImport: Service.Import stores a converted message with the file's
// state, once per digest for good (a clock a year on changes nothing), and
// again once the user's copy is gone; Imported answers without storing.
func TestImport(t *testing.T) {
	f := newAFFixture(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	f.svc.cfg.Clock = func() time.Time { return now }
	deliver := func(raw string, seen, trash bool) (ImportReceipt, string, error) {
		t.Helper()
		res, err := mimeconv.Convert(ctx, bytes.NewReader([]byte(raw)), f.svc.cfg.Resources, mimeconv.Options{})
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := json.Marshal(res.Record)
		info, err := f.svc.cfg.Resources.Put(ctx, bytes.NewReader(rec), resource.PutOptions{Size: int64(len(rec))})
		if err != nil {
			t.Fatal(err)
		}
		epoch, err := f.svc.CollectorEpoch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r, err := f.svc.Import(ctx, ImportDelivery{Address: "Carol@C.test", Message: res.Message, Resources: append(res.Resources, info),
			Record: info.ID, Digest: res.Record.SHA256, Epoch: epoch, Seen: seen, Trash: trash})
		return r, res.Record.SHA256, err
	}
	r1, d1, err := deliver("Subject: one\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\nbody\r\n", true, false)
	if err != nil || r1.Repeated || r1.Message.Folder != meta.Inbox || !r1.Message.Seen || r1.Message.Status != meta.StatusComplete ||
		!r1.Message.Date.Equal(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("first import: %+v, %v", r1, err)
	}
	r2, _, err := deliver("Subject: two\r\n\r\ngone\r\n", false, true)
	if err != nil || r2.Message.Folder != meta.Trash || r2.Message.TrashedFrom != meta.Inbox || r2.Message.Seen {
		t.Fatalf("trashed import: %+v, %v", r2, err)
	}
	now = now.AddDate(1, 0, 0)
	if id, ok, err := f.svc.Imported(ctx, "carol@c.test", d1); err != nil || !ok || id != r1.Message.ID {
		t.Fatalf("Imported a year on: %q %v %v", id, ok, err)
	}
	again, _, err := deliver("Subject: one\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\nbody\r\n", false, false)
	if err != nil || !again.Repeated || again.Message.ID != r1.Message.ID {
		t.Fatalf("the same bytes a year on: %+v, %v", again, err)
	}
	if err := f.svc.Delete(f.as("carol@c.test"), r1.Message.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Purge(f.as("carol@c.test"), r1.Message.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := f.svc.Imported(ctx, "carol@c.test", d1); err != nil || ok {
		t.Fatalf("Imported after the copy was purged: %v %v", ok, err)
	}
	r3, _, err := deliver("Subject: one\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\nbody\r\n", false, false)
	if err != nil || r3.Repeated || r3.Message.ID == r1.Message.ID {
		t.Fatalf("imported again after the purge: %+v, %v", r3, err)
	}
	res, err := mimeconv.Convert(ctx, bytes.NewReader([]byte("Subject: x\r\n\r\n")), f.svc.cfg.Resources, mimeconv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Import(ctx, ImportDelivery{Address: "nobody@c.test", Message: res.Message, Digest: "x"}); errs.KindOf(err) != errs.NotFound {
		t.Errorf("an unknown user: %v, want not found", err)
	}
}
