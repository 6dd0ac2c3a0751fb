package mailbox_test

import (
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/testenv"
)

// TestDownloadDamaged: a stored copy damaged where a download starts is
// answered 503 resource_damaged before any byte (not a 200 cut short);
// damaged further on, the download carries exactly the intact bytes and the
// client names the cut (download_cut) instead of "unexpected EOF".
func TestDownloadDamaged(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	early, late := make([]byte, 200000), make([]byte, 200000)
	rand.Read(early)
	rand.Read(late)
	upEarly, upLate := upload(t, alice, early), upload(t, alice, late)
	text := upload(t, alice, []byte("x"))
	dr, err := alice.CreateDraft(ctx, compose(t, "", []string{"alice@a.test"}, nil, nil, "self", text, upEarly, upLate))
	if err != nil {
		t.Fatal(err)
	}
	testenv.DamageBlob(t, d.Dir, string(upEarly.ContentID), 10)
	testenv.DamageBlob(t, d.Dir, string(upLate.ContentID), 150000)

	_, _, err = alice.Download(ctx, dr.ID, upEarly.ContentID)
	wantCode(t, err, "resource_damaged")
	if errs.KindOf(err) != errs.Temporary {
		t.Fatalf("kind %v, want temporary (503)", errs.KindOf(err))
	}

	rc, _, err := alice.Download(ctx, dr.ID, upLate.ContentID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	wantCode(t, err, "download_cut")
	if !strings.Contains(err.Error(), "byte 131072 of 200000") {
		t.Fatalf("cut error %v does not say where", err)
	}
	if len(got) != 131072 || string(got) != string(late[:131072]) {
		t.Fatalf("got %d bytes before the cut, want the 131072 intact ones", len(got))
	}
	if errors.Is(err, io.EOF) {
		t.Fatal("a cut download ended as if complete")
	}
}
