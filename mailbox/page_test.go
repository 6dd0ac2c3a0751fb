package mailbox

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
)

func TestPageToken(t *testing.T) {
	now := time.Date(2025, 3, 1, 10, 20, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		folder meta.Folder
		key    meta.ListKey
	}{
		{meta.Inbox, meta.ListKey{Date: now, Created: now.Add(time.Second), ID: "mabc"}},
		{meta.Drafts, meta.ListKey{Created: now, ID: "m:with:colons"}},
		{meta.Sent, meta.ListKey{Date: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), Created: now, ID: "x"}},
		{"Re: trips + 100%", meta.ListKey{Date: now, Created: now, ID: "m:1"}},
	} {
		tok := encodePage(tc.folder, tc.key)
		f, k, err := decodePage(tok)
		if err != nil || f != tc.folder || !k.Date.Equal(tc.key.Date) || !k.Created.Equal(tc.key.Created) || k.ID != tc.key.ID {
			t.Errorf("round trip of %v %+v: %v %+v %v", tc.folder, tc.key, f, k, err)
		}
	}
	for _, bad := range []string{"", "!!", "cDE6aW5ib3g6MTox", // p1:inbox:1:1 (no id)
		encodeRaw("p2:inbox:1:1:m"), encodeRaw("p1:a/b:1:1:m"), encodeRaw("p1:Re%3a:1:1:m"), encodeRaw("p1:%41:1:1:m"), encodeRaw("p1:inbox:01:1:m"), encodeRaw("p1:inbox:1:+1:m"),
		encodeRaw("p1:inbox:x:1:m"), encodeRaw("p1:inbox:1:1:"), encodeRaw("p1:inbox:1:1:m") + "=",
	} {
		if _, _, err := decodePage(bad); err == nil {
			t.Errorf("decodePage(%q) accepted", bad)
		}
	}
}

func encodeRaw(s string) string { return b64(s) }

func FuzzPageToken(f *testing.F) {
	f.Add(encodePage(meta.Inbox, meta.ListKey{Date: time.Unix(5, 6), Created: time.Unix(7, 8), ID: "mid"}))
	f.Add(b64("p1:drafts:0:1:m"))
	f.Add(encodePage("Re: x", meta.ListKey{Created: time.Unix(7, 8), ID: "m"}))
	f.Add("not base64")
	f.Fuzz(func(t *testing.T, tok string) {
		folder, key, err := decodePage(tok)
		if err != nil {
			return
		}
		if !folder.Valid() || key.ID == "" {
			t.Fatalf("decodePage(%q) = %q %+v", tok, folder, key)
		}
		// What decodes encodes back to the same token: one key, one token.
		if again := encodePage(folder, key); again != tok {
			t.Fatalf("decodePage(%q) re-encodes as %q", tok, again)
		}
	})
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
