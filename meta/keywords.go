package meta

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Keywords are a message's flags, named as JMAP names them (RFC 8621
// §4.1.1) so that IMAP's flags (RFC 9051 §2.3.2) map onto them one to one:
// \Answered is $answered, \Flagged $flagged, \Deleted $deleted, \Draft
// $draft, and a keyword of IMAP's is itself. \Seen is Message.Seen, never a
// keyword: the listings, counts and the webmail have always read it there.
// They are kept lowercase (JMAP keywords are case-insensitive), sorted and
// each once.
const (
	KeywordAnswered  = "$answered"
	KeywordFlagged   = "$flagged"
	KeywordDeleted   = "$deleted"
	KeywordDraft     = "$draft"
	KeywordForwarded = "$forwarded"
	KeywordJunk      = "$junk"
	KeywordNotJunk   = "$notjunk"
	keywordSeen      = "$seen"
)

// MaxKeywords bounds a message's keywords: each is a word of a row the
// store reads with every listing.
const MaxKeywords = 64

// NormalizeKeywords returns ks lowercased, sorted and each once, or an
// error naming the first that is not a keyword: 1 to 255 characters of
// %x21-%x7e except ( ) { ] % * " \ (RFC 8621 §4.1.1, which is also IMAP's
// flag-keyword atom), and not $seen (Message.Seen holds it).
func NormalizeKeywords(ks []string) ([]string, error) {
	if len(ks) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(ks))
	for _, k := range ks {
		if err := checkKeyword(k); err != nil {
			return nil, err
		}
		out = append(out, strings.ToLower(k))
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > MaxKeywords {
		return nil, fmt.Errorf("%d keywords, at most %d", len(out), MaxKeywords)
	}
	return out, nil
}

func checkKeyword(k string) error {
	if len(k) == 0 || len(k) > 255 {
		return fmt.Errorf("keyword %q: 1 to 255 characters", k)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c < 0x21 || c > 0x7e || strings.IndexByte(`(){]%*"\`, c) >= 0 {
			return fmt.Errorf("keyword %q: character %q not allowed", k, c)
		}
	}
	if strings.EqualFold(k, keywordSeen) {
		return fmt.Errorf("keyword %q: seen is Message.Seen", k)
	}
	return nil
}

// FolderState is what IMAP's SELECT and STATUS say of a folder (RFC 9051
// §7.1, RFC 7162 §3.1.2).
type FolderState struct {
	// UIDValidity is the user's (UIDValidityOf) and never changes: UIDs
	// are never reused, so a client's cached UIDs stay valid (a folder
	// deleted and made again goes on numbering from UIDNext).
	UIDValidity uint32
	UIDNext     uint32 // the UID the next message in the folder gets
	// HighestModSeq is the highest Seq of a change in the folder, a
	// message's removal included; it never goes down.
	HighestModSeq int64
}

// IndexEntry is one message of FolderIndex: what an IMAP session keeps per
// message of a selected folder.
type IndexEntry struct {
	UID      uint32
	ID       string
	ModSeq   int64
	Seen     bool
	Keywords []string
	Date     time.Time // the Date header; zero for drafts
	Created  time.Time // when the store got it (IMAP's INTERNALDATE)
}

// UIDValidityOf is the UIDVALIDITY of every folder of a user made at
// created: its Unix time in seconds (at least 1). It is known before the
// folder is first used, so an empty folder's does not change when mail
// comes, and a copy of the store (which keeps User.Created) keeps it; a user
// deleted and made again with the address gets another.
func UIDValidityOf(created time.Time) uint32 {
	v := uint32(created.Unix())
	if v == 0 {
		v = 1
	}
	return v
}
