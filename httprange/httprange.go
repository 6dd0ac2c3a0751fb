// Package httprange answers the conditional and range headers of a GET or
// HEAD for an immutable representation with a strong ETag: If-Match,
// If-None-Match, If-Range and Range (RFC 9110 §13 and §14).
//
// It exists because http.ServeContent gets corner cases of RFC 9110 wrong
// for us: "bytes=-0" is answered 206 with an impossible Content-Range
// ("bytes 3000-2999/3000") where §14.1.1 says a zero suffix-length is
// unsatisfiable; a range unit it does not know ("items=0-10") is refused
// with 416 where §14.2 says an origin server MUST ignore it; and its error
// answers are plain text. The package only decides: the caller writes the
// answer in its own error format (the mailbox API's JSON, the inbound
// origin's), so both can share the rules.
//
// Decisions:
//   - One range only. A Range with several range-specs is ignored and the
//     whole representation answered 200 (§14.2 lets a server ignore Range);
//     multipart/byteranges is not produced. Clients that resume or seek ask
//     for one range.
//   - An invalid ranges-specifier (bad syntax, last-pos < first-pos, a
//     header given twice) is ignored, not refused (§14.2: MAY ignore).
//   - A zero-length representation has no satisfiable int-range; a suffix
//     range of it is answered 200 whole (empty), since "bytes 0--1/0"
//     cannot be written.
//   - The representation has no modification date, so If-Unmodified-Since
//     and If-Modified-Since are ignored (§13.1.3, §13.1.4) and an If-Range
//     with a date never matches (§13.1.5).
package httprange

import (
	"net/http"
	"strconv"
	"strings"
)

// Range is one satisfiable byte range of a representation.
type Range struct {
	Start  int64 // first byte, 0 <= Start < size
	Length int64 // bytes, >= 1
}

// ContentRange is the Content-Range value of r in a representation of size
// bytes: "bytes FIRST-LAST/SIZE" (RFC 9110 §14.4).
func (r Range) ContentRange(size int64) string {
	return "bytes " + strconv.FormatInt(r.Start, 10) + "-" + strconv.FormatInt(r.Start+r.Length-1, 10) + "/" + strconv.FormatInt(size, 10)
}

// Unsatisfied is the Content-Range value of a 416 answer: "bytes */SIZE".
func Unsatisfied(size int64) string { return "bytes */" + strconv.FormatInt(size, 10) }

// Result is what a Range header asks for.
type Result int

const (
	Whole         Result = iota // no Range, or one to ignore: answer 200 with everything
	Partial                     // one satisfiable range: answer 206
	Unsatisfiable               // answer 416 with Content-Range: Unsatisfied(size)
)

// Parse reads a Range header value for a representation of size bytes.
// The range unit is matched case-insensitively; only "bytes" is known.
func Parse(value string, size int64) (Range, Result) {
	unit, set, ok := strings.Cut(strings.Trim(value, " \t"), "=")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return Range{}, Whole // no ranges-specifier, or a unit we do not know
	}
	var spec string
	n := 0
	for _, el := range strings.Split(set, ",") {
		if el = strings.Trim(el, " \t"); el != "" { // empty list elements are allowed (§5.6.1)
			spec = el
			n++
		}
	}
	if n != 1 {
		return Range{}, Whole // none (invalid) or several (we serve one range only)
	}
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return Range{}, Whole
	}
	if first == "" { // suffix-range: the last N bytes
		n, ok := digits(last)
		switch {
		case !ok:
			return Range{}, Whole
		case n == 0:
			return Range{}, Unsatisfiable // §14.1.1: a suffix-length of 0 is unsatisfiable
		case size == 0:
			return Range{}, Whole
		}
		n = min(n, size)
		return Range{Start: size - n, Length: n}, Partial
	}
	start, ok := digits(first)
	if !ok {
		return Range{}, Whole
	}
	end := int64(-1)
	if last != "" {
		if end, ok = digits(last); !ok || end < start {
			return Range{}, Whole // invalid range-spec (§14.1.1)
		}
	}
	if start >= size {
		return Range{}, Unsatisfiable
	}
	if end < 0 || end >= size {
		end = size - 1
	}
	return Range{Start: start, Length: end - start + 1}, Partial
}

// digits parses 1*DIGIT, saturating at a value past any size instead of
// failing, so that "bytes=0-99999999999999999999" means "to the end".
func digits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	const limit = 1 << 62
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < limit/10 {
			n = n*10 + int64(c-'0')
		} else {
			n = limit
		}
	}
	return n, true
}

// Answer is what to answer a GET or HEAD with.
type Answer struct {
	// Status is 200, 206, 304, 412 or 416.
	Status int
	// Range is the part to send when Status is 206.
	Range Range
	// ContentRange is the Content-Range header for 206 and 416, else "".
	ContentRange string
}

// Evaluate applies RFC 9110 §13.2.2's order to a request for a
// representation of size bytes whose strong entity tag is etag (quoted,
// e.g. `"abc"`): If-Match (412), If-None-Match (304), then If-Range and
// Range. A request with another method than GET or HEAD gets 200 and no
// range (§14.2: Range is defined for GET only).
func Evaluate(r *http.Request, size int64, etag string) Answer {
	h := r.Header
	if v, ok := h["If-Match"]; ok && !matchAny(v, etag, false) {
		return Answer{Status: http.StatusPreconditionFailed}
	}
	if v, ok := h["If-None-Match"]; ok && matchAny(v, etag, true) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return Answer{Status: http.StatusNotModified}
		}
		return Answer{Status: http.StatusPreconditionFailed}
	}
	ranges := h.Values("Range")
	if len(ranges) != 1 || r.Method != http.MethodGet && r.Method != http.MethodHead {
		return Answer{Status: http.StatusOK} // none, or a repeated field: invalid, ignored
	}
	if v, ok := h["If-Range"]; ok && (len(v) != 1 || !strongEqual(strings.Trim(v[0], " \t"), etag)) {
		return Answer{Status: http.StatusOK} // §13.1.5: the condition is false; a date never matches
	}
	rg, res := Parse(ranges[0], size)
	switch res {
	case Partial:
		return Answer{Status: http.StatusPartialContent, Range: rg, ContentRange: rg.ContentRange(size)}
	case Unsatisfiable:
		return Answer{Status: http.StatusRequestedRangeNotSatisfiable, ContentRange: Unsatisfied(size)}
	}
	return Answer{Status: http.StatusOK}
}

// matchAny reports whether a list of entity-tags (every field line of an
// If-Match or If-None-Match) names etag, or is "*". weak selects the weak
// comparison of If-None-Match; If-Match compares strongly (§8.8.3.2).
func matchAny(lines []string, etag string, weak bool) bool {
	for _, line := range lines {
		for el := range strings.SplitSeq(line, ",") {
			el = strings.Trim(el, " \t")
			if el == "*" {
				return true
			}
			if weak {
				el = strings.TrimPrefix(el, "W/")
			}
			if strongEqual(el, etag) {
				return true
			}
		}
	}
	return false
}

// strongEqual compares two entity-tags strongly: neither weak, same opaque
// tag.
func strongEqual(a, b string) bool {
	return a == b && len(a) >= 2 && a[0] == '"' && a[len(a)-1] == '"'
}
