package mailbox_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/testenv"
)

func TestParseQuery(t *testing.T) {
	w := meta.SearchWords
	day := func(s string) time.Time { d, _ := time.Parse("2006-01-02", s); return d }
	tests := []struct {
		q    string
		want meta.SearchQuery
		code string
	}{
		{q: "", want: meta.SearchQuery{}},
		{q: "  tea   party ", want: meta.SearchQuery{Words: [][]string{w("tea"), w("party")}}},
		{q: `"tea party" invoice`, want: meta.SearchQuery{Words: [][]string{w("tea party"), w("invoice")}}},
		{q: `from:alice@a.test TO:"Bob Builder" subject:Re:`, want: meta.SearchQuery{From: [][]string{w("alice a test")}, To: [][]string{w("bob builder")}, Subject: [][]string{w("re")}}},
		{q: "has:attachment in:archive", want: meta.SearchQuery{HasAttachment: true, Folder: meta.Archive}},
		{q: `in:"Re: trips"`, want: meta.SearchQuery{Folder: "Re: trips"}},
		{q: "after:2025-01-02 before:2025/02/01", want: meta.SearchQuery{Since: day("2025-01-02"), Until: day("2025-02-01")}},
		{q: "note:this ---", want: meta.SearchQuery{Words: [][]string{w("note this")}}},
		{q: `"unclosed phrase`, want: meta.SearchQuery{Words: [][]string{w("unclosed phrase")}}},
		{q: "has:pdf", code: "bad_query"},
		{q: "before:yesterday", code: "bad_query"},
		{q: "from:", code: "bad_query"},
		{q: "in:a/b", code: "bad_query"},
		{q: "in:inbox in:archive", code: "bad_query"},
		{q: strings.Repeat("w ", mailbox.MaxQueryTerms+1), code: "bad_query"},
		{q: strings.Repeat("x", mailbox.MaxQueryLen+1), code: "bad_query"},
		{q: "\xff", code: "bad_query"},
	}
	for _, tt := range tests {
		got, err := mailbox.ParseQuery(tt.q)
		if tt.code != "" {
			if err == nil {
				t.Errorf("ParseQuery(%q) = %+v, want %s", tt.q, got, tt.code)
			} else {
				wantCode(t, err, tt.code)
			}
			continue
		}
		if err != nil || !sameQuery(got, tt.want) {
			t.Errorf("ParseQuery(%q) = %+v, %v\nwant %+v", tt.q, got, err, tt.want)
		}
	}
}

func sameQuery(a, b meta.SearchQuery) bool {
	eq := func(x, y [][]string) bool { return slices.EqualFunc(x, y, slices.Equal[[]string]) }
	return eq(a.Words, b.Words) && eq(a.From, b.From) && eq(a.To, b.To) && eq(a.Subject, b.Subject) &&
		a.HasAttachment == b.HasAttachment && a.Folder == b.Folder && a.Since.Equal(b.Since) && a.Until.Equal(b.Until)
}

// FuzzParseQuery: any input is parsed or refused, never a panic, and what
// is parsed holds only what the stores expect: non-empty phrases of index
// words, a valid folder, no more terms than allowed.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"tea party", `from:"Alice B" to:bob has:attachment`, "in:trash after:2025-01-01", `"x`, "has:", ":::", "in:Re: x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := mailbox.ParseQuery(s)
		if err != nil {
			return
		}
		if len(s) > mailbox.MaxQueryLen || !utf8.ValidString(s) {
			t.Fatalf("accepted %q", s)
		}
		n := 0
		for _, ps := range [][][]string{q.Words, q.From, q.To, q.Subject} {
			for _, p := range ps {
				n++
				if len(p) == 0 || !slices.Equal(meta.SearchWords(strings.Join(p, " ")), p) {
					t.Fatalf("ParseQuery(%q): phrase %q is not index words", s, p)
				}
			}
		}
		if n > mailbox.MaxQueryTerms {
			t.Fatalf("ParseQuery(%q): %d phrases", s, n)
		}
		if q.Folder != "" && !q.Folder.Valid() {
			t.Fatalf("ParseQuery(%q): folder %q", s, q.Folder)
		}
	})
}

// TestSearch sends Bob mail and searches it over HTTPS as a user would:
// words of the body, fields, attachments, dates, folders, paging; a
// deleted message leaves the results; Alice never finds Bob's copies
// beyond her own sent ones.
func TestSearch(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	bob := d.AddUser(t, "bob@a.test")
	carol := d.AddUser(t, "carol@a.test")
	send := func(subject, body string, to []string, attach bool) string {
		t.Helper()
		text := upload(t, alice, []byte(body))
		var atts []mailbox.Upload
		if attach {
			atts = append(atts, upload(t, alice, []byte("%PDF-1.7 invoice "+subject)))
		}
		dr, err := alice.CreateDraft(ctx, compose(t, "", to, nil, nil, subject, text, atts...))
		if err != nil {
			t.Fatal(err)
		}
		m, err := alice.Send(ctx, dr.ID)
		if err != nil {
			t.Fatal(err)
		}
		return m.MessageID
	}
	tea := send("Tea party on Thursday", "Bring the March hare and the dormouse.", []string{"bob@a.test"}, false)
	inv := send("Invoice 2025-017", "Your invoice is attached.", []string{"bob@a.test", "carol@a.test"}, true)
	holes := send("Rabbit holes", "Down we go: tea is at four.", []string{"bob@a.test"}, false)
	// An HTML-only body is searched by its text, not its markup.
	html := upload(t, alice, []byte("<p>Croquet <span class=\"x\">flamingos</span> <!-- hidden hedgehogs --></p>"))
	m := placeholder.New("", []string{"bob@a.test"}, nil, nil, "Game")
	m.Header.Del(placeholder.HFrom)
	leaf, _ := placeholder.NewLeaf(html.ContentID, html.Size, "text/html; charset=UTF-8", "inline", "")
	m.Parts = append(m.Parts, leaf)
	dr, err := alice.CreateDraft(ctx, m.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	game, err := alice.Send(ctx, dr.ID)
	if err != nil {
		t.Fatal(err)
	}

	found := func(c mailbox.API, q string) []string {
		t.Helper()
		l, err := c.Search(ctx, mailbox.SearchOptions{Query: q})
		if err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
		var out []string
		for _, m := range l.Messages {
			out = append(out, m.MessageID)
		}
		return out
	}
	today := time.Now().UTC().Format("2006-01-02")
	tomorrow := time.Now().UTC().Add(24 * time.Hour).Format("2006-01-02")
	tests := []struct {
		q    string
		want []string
	}{
		{"dormouse", []string{tea}},
		{"DORM", []string{tea}},
		{"tea", []string{holes, tea}},
		{`"march hare"`, []string{tea}},
		{`"hare march"`, nil},
		{"subject:tea", []string{tea}},
		{"from:alice@a.test invoice", []string{inv}},
		{"from:carol", nil},
		{"to:carol", []string{inv}},
		{"has:attachment", []string{inv}},
		{"flamingos", []string{game.MessageID}},
		{"hedgehogs", nil},
		{"span", nil}, // the markup's
		{"after:" + today + " rabbit", []string{holes}},
		{"before:" + today, nil},
		{"before:" + tomorrow + " hare", []string{tea}},
		{"in:sent tea", nil},
		{"zebra", nil},
	}
	for _, tt := range tests {
		if got := found(bob, tt.q); !slices.Equal(got, tt.want) {
			t.Errorf("bob: search %q = %v, want %v", tt.q, got, tt.want)
		}
	}
	// Alice finds her sent copies (in:sent), Carol only what she got.
	if got := found(alice, "in:sent tea"); !slices.Equal(got, []string{holes, tea}) {
		t.Errorf("alice: in:sent tea = %v", got)
	}
	if got := found(carol, "tea"); len(got) != 0 {
		t.Errorf("carol: tea = %v", got)
	}

	// Paging: one at a time, in order, to the end.
	var paged []string
	opt := mailbox.SearchOptions{Query: "tea", Limit: 1}
	for {
		l, err := bob.Search(ctx, opt)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range l.Messages {
			paged = append(paged, m.MessageID)
		}
		if l.NextPage == "" {
			break
		}
		opt.Page = l.NextPage
	}
	if !slices.Equal(paged, []string{holes, tea}) {
		t.Errorf("paged = %v", paged)
	}
	_, err = bob.Search(ctx, mailbox.SearchOptions{Query: "tea", Page: "bm90IGEgdG9rZW4"})
	wantCode(t, err, "bad_page")
	_, err = bob.Search(ctx, mailbox.SearchOptions{Query: "has:pdf"})
	wantCode(t, err, "bad_query")
	_, err = bob.Search(ctx, mailbox.SearchOptions{Query: "in:Nope"})
	wantCode(t, err, "bad_folder")

	// Moved, it is found in its new folder; in trash, only by in:trash;
	// purged, nowhere.
	in := inbox(t, bob)
	var teaID string
	for _, m := range in {
		if m.MessageID == tea {
			teaID = m.ID
		}
	}
	if _, err := bob.Move(ctx, teaID, "archive"); err != nil {
		t.Fatal(err)
	}
	if got := found(bob, "in:archive hare"); !slices.Equal(got, []string{tea}) {
		t.Errorf("in:archive hare = %v", got)
	}
	if err := bob.Delete(ctx, teaID); err != nil {
		t.Fatal(err)
	}
	if got := found(bob, "hare"); len(got) != 0 {
		t.Errorf("a trashed message is found without in:trash: %v", got)
	}
	if got := found(bob, "in:trash hare"); !slices.Equal(got, []string{tea}) {
		t.Errorf("in:trash hare = %v", got)
	}
	if err := bob.Purge(ctx, teaID); err != nil {
		t.Fatal(err)
	}
	if got := found(bob, "in:trash hare"); len(got) != 0 {
		t.Errorf("a purged message is found: %v", got)
	}
}

// TestSearchInbound: a message from another domain becomes searchable by
// its body once its pull completes, through the server's background
// indexer (no send on this domain indexes it).
func TestSearchInbound(t *testing.T) {
	as := startDev(t, "a.test,b.test", "alice@a.test,bob@b.test")
	alice, bob := as("alice@a.test"), as("bob@b.test")
	text := upload(t, alice, []byte("The quokka crossed the border."))
	att := upload(t, alice, bytes.Repeat([]byte("x"), 100000))
	m := placeholder.New("alice@a.test", []string{"bob@b.test"}, nil, nil, "Over the border")
	tp, _ := placeholder.NewLeaf(text.ContentID, text.Size, "text/plain; charset=UTF-8", "inline", "")
	ap, _ := placeholder.NewLeaf(att.ContentID, att.Size, "application/octet-stream", "attachment", "quokka-photo.bin")
	m.Parts = append(m.Parts, tp, ap)
	dr, err := alice.CreateDraft(ctx, m.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	sent, err := alice.Send(ctx, dr.ID)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		l, err := bob.Search(ctx, mailbox.SearchOptions{Query: "quokka has:attachment from:alice"})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Messages) == 1 && l.Messages[0].MessageID == sent.MessageID {
			if l.Messages[0].Status != "complete" {
				t.Fatalf("found while %s: only complete messages are indexed", l.Messages[0].Status)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob never found the inbound message: %+v", l)
		}
	}
	l, err := bob.Search(ctx, mailbox.SearchOptions{Query: "photo"}) // the attachment's file name
	if err != nil || len(l.Messages) != 1 {
		t.Fatalf("search by file name: %+v, %v", l, err)
	}
}
