package placeholder

import (
	"slices"
	"strings"
)

// The registered header names. A header whose name is one of these, in any
// case, must be spelled exactly so (docs/PROTOCOL.md §2.3).
const (
	HFrom                   = "From"
	HTo                     = "To"
	HCc                     = "Cc"
	HBcc                    = "Bcc"
	HSubject                = "Subject"
	HDate                   = "Date"
	HMessageID              = "Message-ID"
	HThreadID               = "X-Thread-ID"
	HInReplyTo              = "In-Reply-To"
	HReferences             = "References"
	HContentType            = "Content-Type"
	HContentID              = "Content-ID"
	HContentDisposition     = "Content-Disposition"
	HReceived               = "Received"
	HBodyDigest             = "Body-Digest"
	HRecipientsDigest       = "Recipients-Digest"
	HJWTAssertionDigest     = "JWT-Assertion-Digest"
	HForwardedFrom          = "Forwarded-From"
	HForwardedTo            = "Forwarded-To"
	HForwardedMessageID     = "Forwarded-Message-ID" // names one forward (docs/PROTOCOL.md §12.1)
	HForwardedNote          = "Forwarded-Note"       // the forwarder's note (§12.1)
	HDestinationMailboxURL  = "X-Destination-Mailbox-Service-URL"
	HCorrespondenceCategory = "X-Correspondence-Category"
)

// registered maps the lower-case form of every registered name to its spelling.
var registered = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{HFrom, HTo, HCc, HBcc, HSubject, HDate, HMessageID, HThreadID, HInReplyTo,
		HReferences, HContentType, HContentID, HContentDisposition, HReceived, HBodyDigest, HRecipientsDigest,
		HJWTAssertionDigest, HForwardedFrom, HForwardedTo, HForwardedMessageID, HForwardedNote, HDestinationMailboxURL,
		HCorrespondenceCategory} {
		m[strings.ToLower(n)] = n
	}
	return m
}()

// Registered reports the registered spelling of name (in any case), and
// whether name is registered at all.
func Registered(name string) (string, bool) {
	n, ok := registered[strings.ToLower(name)]
	return n, ok
}

// validName reports whether name is an RFC 5322 field-name: one or more
// printable US-ASCII characters other than the colon (RFC 5322 §3.6.8).
func validName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// Field is one header: a name and its value.
type Field struct {
	Name  string
	Value Value
}

// Header is the "headers" object of a message or a part. It keeps its fields
// in canonical order (sorted by the UTF-16 code units of the names, as JCS
// sorts them), because the order of JSON object members carries no meaning.
// Lookups ignore ASCII case; there is at most one field per name in any case.
// The zero Header is empty and ready to use.
type Header struct {
	fields []Field
}

func (h *Header) index(name string) int {
	for i, f := range h.fields {
		if strings.EqualFold(f.Name, name) {
			return i
		}
	}
	return -1
}

// Lookup returns the value of the field named name in any case.
func (h Header) Lookup(name string) (Value, bool) {
	if i := h.index(name); i >= 0 {
		return h.fields[i].Value, true
	}
	return Value{}, false
}

// Get returns the value of the field named name in any case, or the zero
// Value.
func (h Header) Get(name string) Value {
	v, _ := h.Lookup(name)
	return v
}

// Has reports whether a field named name (in any case) is present.
func (h Header) Has(name string) bool { return h.index(name) >= 0 }

// Set sets the field named name, replacing any field of that name in any case.
// A registered name is stored with its registered spelling. Setting the zero
// Value deletes the field. Set does not check the name or the value: Validate
// and Parse do.
func (h *Header) Set(name string, v Value) {
	if r, ok := Registered(name); ok {
		name = r
	}
	h.Del(name)
	if v.IsZero() {
		return
	}
	f := Field{Name: name, Value: Value{vals: append([]string(nil), v.vals...), list: v.list}}
	i, _ := slices.BinarySearchFunc(h.fields, name, func(f Field, n string) int { return compareUTF16(f.Name, n) })
	h.fields = slices.Insert(h.fields, i, f)
}

// SetString sets the field named name to the single value s.
func (h *Header) SetString(name, s string) { h.Set(name, Single(s)) }

// Del deletes the field named name in any case.
func (h *Header) Del(name string) {
	if i := h.index(name); i >= 0 {
		h.fields = slices.Delete(h.fields, i, i+1)
	}
}

// Names returns the field names in canonical order.
func (h Header) Names() []string {
	ns := make([]string, len(h.fields))
	for i, f := range h.fields {
		ns[i] = f.Name
	}
	return ns
}

// Fields returns a copy of the fields in canonical order.
func (h Header) Fields() []Field {
	fs := make([]Field, len(h.fields))
	for i, f := range h.fields {
		fs[i] = Field{Name: f.Name, Value: Value{vals: f.Value.List(), list: f.Value.list}}
	}
	return fs
}

// Len returns the number of fields.
func (h Header) Len() int { return len(h.fields) }

// Clone returns a deep copy of h.
func (h Header) Clone() Header { return Header{fields: h.Fields()} }

// Equal reports whether h and g hold the same fields, names spelled alike.
func (h Header) Equal(g Header) bool {
	if len(h.fields) != len(g.fields) {
		return false
	}
	for i := range h.fields {
		if h.fields[i].Name != g.fields[i].Name || !h.fields[i].Value.Equal(g.fields[i].Value) {
			return false
		}
	}
	return true
}

// MarshalJSON writes the canonical (JCS) form of the header object.
func (h Header) MarshalJSON() ([]byte, error) { return appendHeader(nil, h), nil }
