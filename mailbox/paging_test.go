package mailbox_test

import (
	"slices"
	"testing"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/testenv"
)

// TestPaging pages through a folder while newer messages arrive: every
// message is seen exactly once, newest first, and the last page has no
// next_page.
func TestPaging(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	text := upload(t, alice, []byte("page me"))
	send := func() string {
		dr, err := alice.CreateDraft(ctx, compose(t, "", []string{"alice@a.test"}, nil, nil, "p", text))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Send(ctx, dr.ID); err != nil {
			t.Fatal(err)
		}
		return dr.ID
	}
	for range 7 {
		send()
	}
	all, err := alice.List(ctx, mailbox.ListOptions{Folder: "sent"})
	if err != nil || len(all.Messages) != 7 || all.NextPage != "" {
		t.Fatalf("whole listing: %d messages, next_page %q, %v", len(all.Messages), all.NextPage, err)
	}
	var want []string
	for _, m := range all.Messages {
		want = append(want, m.ID)
	}
	var got []string
	page := ""
	for i := 0; ; i++ {
		l, err := alice.List(ctx, mailbox.ListOptions{Folder: "sent", Limit: 3, Page: page})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range l.Messages {
			got = append(got, m.ID)
		}
		if i == 0 {
			send() // newer than every page: must not shift the pages
		}
		if l.NextPage == "" {
			if len(l.Messages) == 0 {
				t.Error("an empty last page: next_page was set when nothing older remained")
			}
			break
		}
		page = l.NextPage
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged %v, want %v", got, want)
	}
	// A full last page has no next_page either.
	l, err := alice.List(ctx, mailbox.ListOptions{Folder: "sent", Limit: 8})
	if err != nil || len(l.Messages) != 8 || l.NextPage != "" {
		t.Errorf("exactly one page: %d messages, next_page %q, %v", len(l.Messages), l.NextPage, err)
	}
	// A token is for its folder only.
	l, err = alice.List(ctx, mailbox.ListOptions{Folder: "sent", Limit: 1})
	if err != nil || l.NextPage == "" {
		t.Fatal(err)
	}
	_, err = alice.List(ctx, mailbox.ListOptions{Folder: "inbox", Page: l.NextPage})
	wantCode(t, err, "bad_page")
}
