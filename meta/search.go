package meta

import (
	"strings"
	"time"
	"unicode"
)

// The search index (docs/PROTOCOL.md §8.19) holds, for each message that
// is sent or complete, its From, To and Cc, Subject and text bodies as
// words: runs of letters and digits, lower-cased (SearchWords). Every store
// indexes the words joined by single spaces, and every query is words too,
// so that SQLite FTS5, PostgreSQL full-text search and memstore agree on
// what matches: a query word matches an indexed word it is a prefix of,
// and a phrase (the words of one query term, "alice@a.test" being alice, a,
// test) matches those words in a row, the last one by prefix.

// SearchDoc is what IndexMessage keeps of a message.
type SearchDoc struct {
	From, To, Subject, Body string // To holds every To and Cc address
	HasAttachment           bool
}

// MaxSearchBody is how much of a message's text bodies the index keeps, in
// bytes; the rest is not searchable.
const MaxSearchBody = 256 << 10

// SearchQuery selects one user's messages. Every condition must hold; an
// empty query matches every indexed message of the folders it covers.
type SearchQuery struct {
	Words   [][]string // phrases (SearchWords of a term) to find in any field
	From    [][]string // phrases to find in From
	To      [][]string // phrases to find in To (or Cc)
	Subject [][]string // phrases to find in Subject
	// HasAttachment keeps only messages with an attachment.
	HasAttachment bool
	// Folder, when set, is the only folder searched; otherwise every folder
	// but trash and junk is.
	Folder Folder
	// Since and Until bound the message's Date: Since <= Date < Until, each
	// when not zero.
	Since, Until time.Time
	Limit        int      // <= 0: all
	Page         *ListKey // strictly after this position of the order
}

// SearchWords splits s into the index's words: maximal runs of letters
// and digits, lower-cased.
func SearchWords(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// SearchText is s as the index stores it: its words joined by spaces.
func SearchText(s string) string { return strings.Join(SearchWords(s), " ") }

// MatchPhrase reports whether the phrase occurs in words (both
// SearchWords): its words in a row, the last a prefix of an indexed word,
// the others equal. memstore matches with it; it is the meaning the SQL
// stores implement.
func MatchPhrase(words, phrase []string) bool {
	if len(phrase) == 0 {
		return true
	}
	last := len(phrase) - 1
	for i := 0; i+len(phrase) <= len(words); i++ {
		ok := true
		for j, p := range phrase {
			if j < last && words[i+j] != p || j == last && !strings.HasPrefix(words[i+j], p) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// Searched reports whether a message in folder f is in q's scope.
func (q SearchQuery) Searched(f Folder) bool {
	if q.Folder != "" {
		return f == q.Folder
	}
	return f != Trash && f != Junk
}
