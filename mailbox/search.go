package mailbox

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
)

// Search (docs/PROTOCOL.md §8.19). The index is the metadata store's
// (meta.Tx.IndexMessage); the service fills it outside any transaction:
// IndexPending reads the text bodies of messages that became sent or
// complete from the resource store, then writes their entries in one
// short transaction. Send indexes what it delivered before it answers;
// RunIndexer indexes the rest (deliveries from other domains, pulls that
// completed) when a commit wakes it, and every interval.

// SearchOptions is a search: the query (ParseQuery) and the page, as for
// a folder listing.
type SearchOptions struct {
	Query string
	Limit int    // <= 0: the server's default (1000)
	Page  string // a List.NextPage of the same search; "": the newest
}

// The query's bounds: longer queries are refused (bad_query).
const (
	MaxQueryLen   = 1000
	MaxQueryTerms = 32
)

// indexBatch is how many messages one index transaction writes.
const indexBatch = 50

// queryKeys are the operators of a query, each "key:value".
var queryKeys = map[string]bool{"from": true, "to": true, "subject": true, "has": true, "before": true, "after": true, "in": true}

func badQuery(format string, args ...any) error {
	return errs.E(errs.Invalid, "bad_query", format, args...)
}

// ParseQuery parses a search query: terms separated by white space, each a
// word or a "quoted phrase" to find in any field, or one of
//
//	from:TERM to:TERM subject:TERM   a word or "phrase" in that field (to: covers Cc)
//	has:attachment                   only messages with an attachment
//	after:YYYY-MM-DD before:YYYY-MM-DD  dated on or after, or before, that day (UTC)
//	in:FOLDER                        only that folder (default: all but trash and junk)
//
// Keys are case-insensitive; an unknown key:value is a plain term. A term
// matches words it is a prefix of (meta.SearchWords: letters and digits;
// "alice@a.test" is the phrase alice a test).
func ParseQuery(q string) (meta.SearchQuery, error) {
	var out meta.SearchQuery
	if len(q) > MaxQueryLen {
		return out, badQuery("the query is longer than %d bytes", MaxQueryLen)
	}
	if !utf8.ValidString(q) {
		return out, badQuery("the query is not UTF-8")
	}
	terms, folders := 0, 0
	for rest := q; ; {
		rest = strings.TrimLeftFunc(rest, unicode.IsSpace)
		if rest == "" {
			break
		}
		key := ""
		if i := strings.IndexByte(rest, ':'); i > 0 && queryKeys[strings.ToLower(rest[:i])] && !strings.ContainsFunc(rest[:i], unicode.IsSpace) {
			key, rest = strings.ToLower(rest[:i]), rest[i+1:]
		}
		var value string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 { // an unclosed quote runs to the end
				value, rest = rest[1:], ""
			} else {
				value, rest = rest[1:1+end], rest[2+end:]
			}
		} else {
			end := strings.IndexFunc(rest, unicode.IsSpace)
			if end < 0 {
				end = len(rest)
			}
			value, rest = rest[:end], rest[end:]
		}
		if key != "" && value == "" {
			return out, badQuery("%s: wants a value", key)
		}
		if terms++; terms > MaxQueryTerms {
			return out, badQuery("the query has more than %d terms", MaxQueryTerms)
		}
		switch key {
		case "has":
			if strings.ToLower(value) != "attachment" {
				return out, badQuery("has:%s: only has:attachment is known", value)
			}
			out.HasAttachment = true
		case "before", "after":
			d, err := parseDay(value)
			if err != nil {
				return out, badQuery("%s:%s: want a date YYYY-MM-DD", key, value)
			}
			if key == "before" {
				out.Until = d
			} else {
				out.Since = d
			}
		case "in":
			f := meta.Folder(value)
			if !f.Valid() {
				return out, badQuery("in:%s: no such folder", value)
			}
			if folders++; folders > 1 {
				return out, badQuery("in: may be given once")
			}
			out.Folder = f
		default:
			words := meta.SearchWords(value)
			if len(words) == 0 {
				continue // nothing searchable: punctuation alone
			}
			switch key {
			case "from":
				out.From = append(out.From, words)
			case "to":
				out.To = append(out.To, words)
			case "subject":
				out.Subject = append(out.Subject, words)
			default:
				out.Words = append(out.Words, words)
			}
		}
	}
	return out, nil
}

// parseDay reads YYYY-MM-DD (or YYYY/MM/DD) as that day's start in UTC.
func parseDay(s string) (time.Time, error) {
	return time.Parse("2006-01-02", strings.ReplaceAll(s, "/", "-"))
}

// Search implements API.
func (s *Service) Search(ctx context.Context, opt SearchOptions) (List, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return List{}, err
	}
	q, err := ParseQuery(opt.Query)
	if err != nil {
		return List{}, err
	}
	limit := opt.Limit
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	q.Limit = limit + 1 // one more: is there a next page?
	if opt.Page != "" {
		key, err := decodeSearchPage(opt.Page)
		if err != nil {
			return List{}, errs.E(errs.Invalid, "bad_page", "page is not a next_page token of a search")
		}
		q.Page = &key
	}
	var rows []meta.Message
	err = s.cfg.Meta.View(ctx, func(r meta.Reader) error {
		if q.Folder != "" {
			if err := mustHaveFolder(ctx, r, p.UserID, q.Folder); err != nil {
				return err
			}
		}
		rows, err = r.Search(ctx, p.UserID, q)
		return err
	})
	if err != nil {
		return List{}, storeErr(err, "searching failed")
	}
	out := List{Messages: make([]Message, 0, len(rows))}
	if len(rows) > limit {
		rows = rows[:limit]
		out.NextPage = encodeSearchPage(meta.KeyOf(rows[len(rows)-1]))
	}
	for _, row := range rows {
		v := s.view(row, false)
		if err := s.addDeliveries(ctx, &v, row); err != nil {
			return List{}, storeErr(err, "reading the delivery state failed")
		}
		out.Messages = append(out.Messages, v)
	}
	return out, nil
}

// encodeSearchPage and decodeSearchPage are the page tokens of a search:
// unpadded base64url of "s1:DATE:CREATED:ID" (page.go's times).
func encodeSearchPage(key meta.ListKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte("s1:" + strconv.FormatInt(unixNanos(key.Date), 10) + ":" + strconv.FormatInt(unixNanos(key.Created), 10) + ":" + key.ID))
}

func decodeSearchPage(token string) (meta.ListKey, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(token) > 512 || base64.RawURLEncoding.EncodeToString(b) != token {
		return meta.ListKey{}, errBadPage
	}
	f := strings.SplitN(string(b), ":", 4)
	if len(f) != 4 || f[0] != "s1" || f[3] == "" {
		return meta.ListKey{}, errBadPage
	}
	date, err1 := strconv.ParseInt(f[1], 10, 64)
	created, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || f[1] != strconv.FormatInt(date, 10) || f[2] != strconv.FormatInt(created, 10) {
		return meta.ListKey{}, errBadPage
	}
	return meta.ListKey{Date: fromUnixNanos(date), Created: fromUnixNanos(created), ID: f[3]}, nil
}

// IndexPending indexes every message that is sent or complete and not yet
// in the search index (meta.Reader.Unindexed), in batches, and returns how
// many. The bodies are read before each batch's transaction.
func (s *Service) IndexPending(ctx context.Context) (int, error) {
	n := 0
	for {
		rows, err := s.cfg.Meta.Unindexed(ctx, indexBatch)
		if err != nil {
			return n, fmt.Errorf("finding messages to index: %w", err)
		}
		if len(rows) == 0 {
			return n, nil
		}
		docs := make([]meta.SearchDoc, len(rows))
		for i, row := range rows {
			docs[i] = s.searchDoc(ctx, row)
		}
		err = s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
			for i, row := range rows {
				// A message deleted since is simply not indexed.
				if err := tx.IndexMessage(ctx, row.UserID, row.ID, docs[i]); err != nil && !errors.Is(err, meta.ErrNotFound) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("indexing: %w", err)
		}
		n += len(rows)
		if len(rows) < indexBatch {
			return n, nil
		}
	}
}

// RunIndexer runs IndexPending now, after every commit the service's event
// hub tells of (Config.Events), and every interval, until ctx ends.
func (s *Service) RunIndexer(ctx context.Context, every time.Duration) {
	var wake <-chan struct{}
	if h := s.cfg.Events; h != nil {
		ch, stop := h.subscribeAll()
		defer stop()
		wake = ch
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := s.IndexPending(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("search indexing failed", "err", err)
		} else if n > 0 {
			s.log.Debug("indexed for search", "messages", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
	}
}

// tags matches an HTML tag or comment, for the crude text of an HTML-only
// body: the index wants its words, not its markup.
var tags = regexp.MustCompile(`(?s)<!--.*?-->|<[^>]*>`)

// searchDoc is what the index keeps of row: its headers, its first text
// body (or its HTML body's text) up to meta.MaxSearchBody, and its
// attachments' file names. A body that cannot be read is left out (the
// headers are still indexed) and logged.
func (s *Service) searchDoc(ctx context.Context, row meta.Message) meta.SearchDoc {
	m := s.view(row, true)
	doc := meta.SearchDoc{From: m.From, To: strings.Join(append(append(append([]string(nil), m.To...), m.Cc...), m.Bcc...), ", "),
		Subject: m.Subject, HasAttachment: len(m.Attachments) > 0}
	body, html := m.Text, false
	if body == nil && m.HTML != nil {
		body, html = m.HTML, true
	}
	var text strings.Builder
	if body != nil {
		b, err := s.readText(ctx, body.ContentID)
		if err != nil {
			s.log.Warn("indexing without the body", "msgid", row.MessageID, "err", err)
		}
		if html {
			b = tags.ReplaceAllString(b, " ")
		}
		text.WriteString(b)
	}
	for _, a := range m.Attachments {
		if a.Filename != "" {
			text.WriteString("\n" + a.Filename)
		}
	}
	doc.Body = text.String()
	return doc
}

// readText reads up to meta.MaxSearchBody bytes of a resource as text.
func (s *Service) readText(ctx context.Context, id resource.ID) (string, error) {
	obj, err := s.cfg.Resources.Open(ctx, id)
	if err != nil {
		return "", err
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, meta.MaxSearchBody))
	return strings.ToValidUTF8(string(b), " "), err
}
