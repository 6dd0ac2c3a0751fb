package jmap

import (
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pullmail/pullmail/mailbox"
)

// filter is an Email/query FilterOperator or FilterCondition (RFC 8621
// §4.4.1).
type filter struct {
	Operator           string    `json:"operator"`
	Conditions         []*filter `json:"conditions"`
	InMailbox          string    `json:"inMailbox"`
	InMailboxOtherThan []string  `json:"inMailboxOtherThan"`
	Before             string    `json:"before"`
	After              string    `json:"after"`
	MinSize            *int64    `json:"minSize"`
	MaxSize            *int64    `json:"maxSize"`
	HasKeyword         string    `json:"hasKeyword"`
	NotKeyword         string    `json:"notKeyword"`
	HasAttachment      *bool     `json:"hasAttachment"`
	Text               string    `json:"text"`
	From               string    `json:"from"`
	To                 string    `json:"to"`
	Cc                 string    `json:"cc"`
	Bcc                string    `json:"bcc"`
	Subject            string    `json:"subject"`
	Body               string    `json:"body"`
	hits               map[string]bool
}

func parseFilter(raw json.RawMessage) (*filter, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var f filter
	if err := decodeArgs(raw, &f); err != nil {
		return nil, merr("unsupportedFilter", "%v", err.(*MethodError).Description)
	}
	if f.Operator != "" && f.Operator != "AND" && f.Operator != "OR" && f.Operator != "NOT" {
		return nil, merr("unsupportedFilter", "no operator %q", f.Operator)
	}
	for _, t := range []string{f.Before, f.After} {
		if t != "" {
			if _, err := time.Parse(time.RFC3339, t); err != nil {
				return nil, merr("invalidArguments", "before and after are UTCDates: %v", err)
			}
		}
	}
	return &f, nil
}

// words are the filter's search words, lower-cased, for snippets.
func (f *filter) words() []string {
	if f == nil {
		return nil
	}
	var out []string
	for _, s := range []string{f.Text, f.From, f.To, f.Cc, f.Bcc, f.Subject, f.Body} {
		out = append(out, strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !isWordRune(r) })...)
	}
	for _, c := range f.Conditions {
		if f.Operator != "NOT" {
			out = append(out, c.words()...)
		}
	}
	return out
}

func isWordRune(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r > 127 && r != 0xa0
}

// searchQuery is the mailbox search query (docs/PROTOCOL.md §8.19) of a
// condition's text criteria, "" when it has none.
func (f *filter) searchQuery() string {
	var terms []string
	add := func(key, v string) {
		for _, w := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '"' || r == '\t' }) {
			terms = append(terms, key+w)
		}
	}
	add("", f.Text)
	add("", f.Body)
	add("from:", f.From)
	add("to:", f.To)
	add("to:", f.Cc)
	add("", f.Bcc)
	add("subject:", f.Subject)
	return strings.Join(terms, " ")
}

// prepare runs, through the search index, the text criteria of every
// condition (every folder: trash and junk too), remembering the ids.
func (c *call) prepare(f *filter) error {
	if f == nil {
		return nil
	}
	for _, sub := range f.Conditions {
		if err := c.prepare(sub); err != nil {
			return err
		}
	}
	q := f.searchQuery()
	if q == "" {
		return nil
	}
	f.hits = map[string]bool{}
	for _, extra := range []string{"", " in:trash", " in:junk"} {
		page := ""
		for {
			l, err := c.h.mb.Search(c.ctx, mailbox.SearchOptions{Query: q + extra, Page: page})
			if err != nil {
				return err
			}
			for _, m := range l.Messages {
				f.hits[m.ID] = true
			}
			if page = l.NextPage; page == "" {
				break
			}
		}
	}
	return nil
}

func (f *filter) match(m mailbox.Message, folderOf func(string) string) bool {
	if f == nil {
		return true
	}
	switch f.Operator {
	case "AND":
		for _, c := range f.Conditions {
			if !c.match(m, folderOf) {
				return false
			}
		}
		return true
	case "OR":
		for _, c := range f.Conditions {
			if c.match(m, folderOf) {
				return true
			}
		}
		return false
	case "NOT":
		for _, c := range f.Conditions {
			if c.match(m, folderOf) {
				return false
			}
		}
		return true
	}
	kw := keywords(m)
	switch {
	case f.InMailbox != "" && folderOf(f.InMailbox) != m.Folder:
		return false
	case slices.ContainsFunc(f.InMailboxOtherThan, func(id string) bool { return folderOf(id) == m.Folder }):
		return false
	case f.Before != "" && !m.Created.Before(mustTime(f.Before)):
		return false
	case f.After != "" && m.Created.Before(mustTime(f.After)):
		return false
	case f.MinSize != nil && m.Size < *f.MinSize, f.MaxSize != nil && m.Size >= *f.MaxSize:
		return false
	case f.HasKeyword != "" && !kw[strings.ToLower(f.HasKeyword)]:
		return false
	case f.NotKeyword != "" && kw[strings.ToLower(f.NotKeyword)]:
		return false
	case f.HasAttachment != nil && *f.HasAttachment != (len(m.Attachments) > 0):
		return false
	case f.hits != nil && !f.hits[m.ID]:
		return false
	}
	return true
}

func mustTime(s string) time.Time { t, _ := time.Parse(time.RFC3339, s); return t }

// sortOptions are Email/query's sorts (RFC 8621 §4.4.2).
var sortOptions = []string{"receivedAt", "sentAt", "size", "from", "to", "subject", "hasKeyword", "id"}

func (c *call) emailQuery(args json.RawMessage) (any, error) {
	var a QueryArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	f, err := parseFilter(a.Filter)
	if err != nil {
		return nil, err
	}
	for _, s := range a.Sort {
		if !slices.Contains(sortOptions, s.Property) {
			return nil, merr("unsupportedSort", "Email/query sorts by %s", strings.Join(sortOptions, ", "))
		}
	}
	if err := c.prepare(f); err != nil {
		return nil, err
	}
	ms, err := c.mailboxes()
	if err != nil {
		return nil, err
	}
	folderOf := func(id string) string {
		id = c.resolveID(id)
		for _, m := range ms {
			if m.ID == id {
				return m.folder
			}
		}
		return "\x00none"
	}
	s, err := c.all()
	if err != nil {
		return nil, err
	}
	var keep []mailbox.Message
	for _, m := range s.msgs {
		if f.match(m, folderOf) {
			keep = append(keep, m)
		}
	}
	sorts := a.Sort
	if len(sorts) == 0 {
		f := false
		sorts = []Comparator{{Property: "receivedAt", IsAscending: &f}}
	}
	sort.SliceStable(keep, func(i, j int) bool {
		for _, s := range sorts {
			cmp := compareBy(keep[i], keep[j], s)
			if cmp != 0 {
				return (cmp < 0) == s.ascending()
			}
		}
		return keep[i].ID < keep[j].ID
	})
	ids := make([]string, 0, len(keep))
	threads := map[string]bool{}
	for _, m := range keep {
		if a.CollapseThreads {
			if threads[threadID(m)] {
				continue
			}
			threads[threadID(m)] = true
		}
		ids = append(ids, m.ID)
	}
	out, err := window(ids, a, 1000)
	if err != nil {
		return nil, err
	}
	out.AccountID, out.QueryState = c.acct, s.cursor
	return out, nil
}

func compareBy(x, y mailbox.Message, s Comparator) int {
	str := func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) }
	switch s.Property {
	case "receivedAt":
		return x.Created.Compare(y.Created)
	case "sentAt":
		var a, b time.Time
		if x.Date != nil {
			a = *x.Date
		}
		if y.Date != nil {
			b = *y.Date
		}
		return a.Compare(b)
	case "size":
		return int(min(max(x.Size-y.Size, -1), 1))
	case "from":
		return str(x.From, y.From)
	case "to":
		return str(strings.Join(x.To, ","), strings.Join(y.To, ","))
	case "subject":
		return str(x.Subject, y.Subject)
	case "hasKeyword":
		a, b := keywords(x)[strings.ToLower(s.Keyword)], keywords(y)[strings.ToLower(s.Keyword)]
		switch {
		case a == b:
			return 0
		case a:
			return 1
		}
		return -1
	}
	return strings.Compare(x.ID, y.ID)
}
