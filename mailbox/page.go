package mailbox

import (
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pullmail/pullmail/meta"
)

// A page token (docs/PROTOCOL.md §8.10.2) names the last message of a page
// by its position in the listing's order, so that the next page starts
// after it however many newer messages arrive meanwhile. It is opaque to
// clients: unpadded base64url of "p1:FOLDER:DATE:CREATED:ID" (FOLDER
// query-escaped, as a user folder's name may hold ':'; a system folder's
// name is unchanged by it), the times in
// Unix nanoseconds (0 for the zero time, as drafts have no Date).

var errBadPage = errors.New("malformed page token")

// encodePage returns the token for the page that follows key in folder.
func encodePage(folder meta.Folder, key meta.ListKey) string {
	s := "p1:" + url.QueryEscape(string(folder)) + ":" + strconv.FormatInt(unixNanos(key.Date), 10) + ":" +
		strconv.FormatInt(unixNanos(key.Created), 10) + ":" + key.ID
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// decodePage parses a token; the folder it names must be the one listed.
func decodePage(token string) (meta.Folder, meta.ListKey, error) {
	if len(token) > 512 {
		return "", meta.ListKey{}, errBadPage
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	// The decoder skips CR and LF: a token is only its canonical encoding.
	if err != nil || base64.RawURLEncoding.EncodeToString(b) != token {
		return "", meta.ListKey{}, errBadPage
	}
	f := strings.SplitN(string(b), ":", 5)
	if len(f) != 5 || f[0] != "p1" || f[4] == "" {
		return "", meta.ListKey{}, errBadPage
	}
	folder, err := url.QueryUnescape(f[1])
	if err != nil || url.QueryEscape(folder) != f[1] || !meta.Folder(folder).Valid() {
		return "", meta.ListKey{}, errBadPage
	}
	date, err1 := strconv.ParseInt(f[2], 10, 64)
	created, err2 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil || f[2] != strconv.FormatInt(date, 10) || f[3] != strconv.FormatInt(created, 10) {
		return "", meta.ListKey{}, errBadPage
	}
	return meta.Folder(folder), meta.ListKey{Date: fromUnixNanos(date), Created: fromUnixNanos(created), ID: f[4]}, nil
}

func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
