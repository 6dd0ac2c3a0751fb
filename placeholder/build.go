package placeholder

import (
	"crypto/rand"
	"fmt"
	"strings"
	"time"
)

// New returns a draft message from one author to the given recipients, with
// Content-Type multipart/mixed and no parts yet: append them (NewLeaf,
// Alternative) before it is valid. Address headers are written as one string,
// the addresses joined by ", "; empty lists leave the header out; an empty
// subject leaves Subject out. New does not check the addresses: Validate does.
func New(from string, to, cc, bcc []string, subject string) *Message {
	m := &Message{}
	m.Header.SetString(HFrom, from)
	for _, f := range []struct {
		name  string
		addrs []string
	}{{HTo, to}, {HCc, cc}, {HBcc, bcc}} {
		if len(f.addrs) > 0 {
			m.Header.SetString(f.name, strings.Join(f.addrs, ", "))
		}
	}
	if subject != "" {
		m.Header.SetString(HSubject, subject)
	}
	m.Header.SetString(HContentType, "multipart/mixed")
	return m
}

// Alternative returns the parts as one part: the part itself when there is
// one, otherwise a multipart/alternative of them (least preferred first, as
// in RFC 2046 §5.1.4).
func Alternative(parts ...Part) Part {
	if len(parts) == 1 {
		return parts[0]
	}
	var h Header
	h.SetString(HContentType, "multipart/alternative")
	return Part{Header: h, Parts: parts}
}

// IsSent reports whether m has been sent: a message with a Date is sent and
// immutable, one without is a draft (docs/PROTOCOL.md §6).
func (m *Message) IsSent() bool { return m.Header.Has(HDate) }

// ServerOwned returns the names of the headers that only a server sets
// (docs/PROTOCOL.md §6.2). The slice is new.
func ServerOwned() []string {
	return []string{HDate, HMessageID, HThreadID, HReceived, HBodyDigest, HRecipientsDigest,
		HJWTAssertionDigest, HForwardedFrom, HForwardedTo, HForwardedMessageID, HForwardedNote, HDestinationMailboxURL}
}

// ClientSetServerOwned returns the server-owned headers present in h, in the
// order of ServerOwned.
func ClientSetServerOwned(h Header) []string {
	var out []string
	for _, n := range ServerOwned() {
		if h.Has(n) {
			out = append(out, n)
		}
	}
	return out
}

// CheckClientHeader refuses a header block from a client that sets a
// server-owned header, with code server_owned_header.
func CheckClientHeader(h Header) error {
	if names := ClientSetServerOwned(h); len(names) > 0 {
		return invalid(CodeServerOwnedHeader, "only the server sets these headers: %s", strings.Join(names, ", "))
	}
	return nil
}

// NewMessageID returns a new "<uuid@domain>" for Message-ID or X-Thread-ID,
// the uuid a random (version 4) UUID from crypto/rand.
func NewMessageID(domain string) string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("<%x-%x-%x-%x-%x@%s>", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16], strings.ToLower(domain))
}

// FormatDate writes t as the Date header: the RFC 5322 §3.3 date-time
// "Mon, 02 Jan 2006 15:04:05 -0700", in UTC, to the second.
func FormatDate(t time.Time) string { return t.UTC().Format(time.RFC1123Z) }
