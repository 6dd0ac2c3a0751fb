package httprange

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestParse holds Parse to RFC 9110 §14.1 for a representation of 3000
// bytes unless the case says otherwise.
func TestParse(t *testing.T) {
	tests := []struct {
		value string
		size  int64
		res   Result
		start int64
		n     int64
	}{
		{"bytes=0-0", 3000, Partial, 0, 1},
		{"bytes=0-", 3000, Partial, 0, 3000},
		{"bytes=0-2999", 3000, Partial, 0, 3000},
		{"bytes=10-19", 3000, Partial, 10, 10},
		{"bytes=2999-", 3000, Partial, 2999, 1},
		{"bytes=-1", 3000, Partial, 2999, 1},
		{"bytes=-500", 3000, Partial, 2500, 500},
		{"bytes=-5000", 3000, Partial, 0, 3000}, // longer than the representation: all of it
		{"bytes=-0", 3000, Unsatisfiable, 0, 0}, // §14.1.1: suffix-length 0
		{"bytes=-00", 3000, Unsatisfiable, 0, 0},
		{"bytes=100-99999", 3000, Partial, 100, 2900}, // last-pos past the end: to the end
		{"bytes=0-99999999999999999999999", 3000, Partial, 0, 3000},
		{"bytes=3000-", 3000, Unsatisfiable, 0, 0},
		{"bytes=3000-3000", 3000, Unsatisfiable, 0, 0},
		{"bytes=99999999999999999999999-", 3000, Unsatisfiable, 0, 0},
		{"bytes=20-10", 3000, Whole, 0, 0}, // last-pos < first-pos: invalid, ignored
		{"bytes= 10-19", 3000, Partial, 10, 10},
		{"bytes=10-19 ", 3000, Partial, 10, 10},
		{" bytes=10-19", 3000, Partial, 10, 10},
		{"bytes=10-19,", 3000, Partial, 10, 10}, // an empty list element
		{"bytes=,10-19", 3000, Partial, 10, 10},
		{"bytes=10 - 19", 3000, Whole, 0, 0}, // no OWS inside a range-spec
		{"bytes =10-19", 3000, Whole, 0, 0},
		{"BYTES=10-19", 3000, Partial, 10, 10}, // units are case-insensitive
		{"items=0-10", 3000, Whole, 0, 0},      // §14.2: an unknown unit is ignored
		{"bytes=0-1,5-6", 3000, Whole, 0, 0},   // several ranges: served whole
		{"bytes=0-1, 3000-", 3000, Whole, 0, 0},
		{"bytes=", 3000, Whole, 0, 0},
		{"bytes=,", 3000, Whole, 0, 0},
		{"bytes", 3000, Whole, 0, 0},
		{"", 3000, Whole, 0, 0},
		{"bytes=-", 3000, Whole, 0, 0},
		{"bytes=a-b", 3000, Whole, 0, 0},
		{"bytes=+1-2", 3000, Whole, 0, 0},
		{"bytes=1--2", 3000, Whole, 0, 0},
		{"bytes=0x10-", 3000, Whole, 0, 0},
		{"bytes=0-0", 0, Unsatisfiable, 0, 0}, // a 0-length resource has no int-range
		{"bytes=0-", 0, Unsatisfiable, 0, 0},
		{"bytes=-1", 0, Whole, 0, 0},
		{"bytes=-0", 0, Unsatisfiable, 0, 0},
		{"bytes=0-0", 1, Partial, 0, 1},
	}
	for _, tt := range tests {
		r, res := Parse(tt.value, tt.size)
		if res != tt.res || res == Partial && (r.Start != tt.start || r.Length != tt.n) {
			t.Errorf("Parse(%q, %d) = %+v %v, want %v start %d length %d", tt.value, tt.size, r, res, tt.res, tt.start, tt.n)
		}
	}
}

func TestContentRange(t *testing.T) {
	if got := (Range{Start: 2999, Length: 1}).ContentRange(3000); got != "bytes 2999-2999/3000" {
		t.Errorf("ContentRange = %q", got)
	}
	if got := Unsatisfied(3000); got != "bytes */3000" {
		t.Errorf("Unsatisfied = %q", got)
	}
}

func TestEvaluate(t *testing.T) {
	const etag = `"abc"`
	tests := []struct {
		name   string
		method string
		hdr    map[string][]string
		status int
		cr     string
	}{
		{"plain", "GET", nil, 200, ""},
		{"range", "GET", map[string][]string{"Range": {"bytes=0-9"}}, 206, "bytes 0-9/100"},
		{"head range", "HEAD", map[string][]string{"Range": {"bytes=0-9"}}, 206, "bytes 0-9/100"},
		{"range on POST ignored", "POST", map[string][]string{"Range": {"bytes=0-9"}}, 200, ""},
		{"suffix zero", "GET", map[string][]string{"Range": {"bytes=-0"}}, 416, "bytes */100"},
		{"past end", "GET", map[string][]string{"Range": {"bytes=100-"}}, 416, "bytes */100"},
		{"unknown unit", "GET", map[string][]string{"Range": {"items=0-10"}}, 200, ""},
		{"repeated Range", "GET", map[string][]string{"Range": {"bytes=0-9", "bytes=0-9"}}, 200, ""},
		{"If-Range match", "GET", map[string][]string{"Range": {"bytes=0-9"}, "If-Range": {etag}}, 206, "bytes 0-9/100"},
		{"If-Range other", "GET", map[string][]string{"Range": {"bytes=0-9"}, "If-Range": {`"xyz"`}}, 200, ""},
		{"If-Range weak", "GET", map[string][]string{"Range": {"bytes=0-9"}, "If-Range": {`W/"abc"`}}, 200, ""},
		{"If-Range date", "GET", map[string][]string{"Range": {"bytes=0-9"}, "If-Range": {"Wed, 21 Oct 2015 07:28:00 GMT"}}, 200, ""},
		{"If-Range unsatisfiable but stale", "GET", map[string][]string{"Range": {"bytes=500-"}, "If-Range": {`"xyz"`}}, 200, ""},
		{"If-None-Match", "GET", map[string][]string{"If-None-Match": {etag}}, 304, ""},
		{"If-None-Match weak", "GET", map[string][]string{"If-None-Match": {`W/"abc"`}}, 304, ""},
		{"If-None-Match list", "HEAD", map[string][]string{"If-None-Match": {`"x", "abc"`}}, 304, ""},
		{"If-None-Match star", "GET", map[string][]string{"If-None-Match": {"*"}}, 304, ""},
		{"If-None-Match other", "GET", map[string][]string{"If-None-Match": {`"x"`}, "Range": {"bytes=0-0"}}, 206, "bytes 0-0/100"},
		{"If-None-Match beats Range", "GET", map[string][]string{"If-None-Match": {etag}, "Range": {"bytes=0-0"}}, 304, ""},
		{"If-Match", "GET", map[string][]string{"If-Match": {etag}}, 200, ""},
		{"If-Match star", "GET", map[string][]string{"If-Match": {"*"}}, 200, ""},
		{"If-Match other", "GET", map[string][]string{"If-Match": {`"x"`}}, 412, ""},
		{"If-Match weak", "GET", map[string][]string{"If-Match": {`W/"abc"`}}, 412, ""},
		{"If-Match beats If-None-Match", "GET", map[string][]string{"If-Match": {`"x"`}, "If-None-Match": {etag}}, 412, ""},
	}
	for _, tt := range tests {
		r, _ := http.NewRequest(tt.method, "https://x.test/r", nil)
		for k, vs := range tt.hdr {
			for _, v := range vs {
				r.Header.Add(k, v)
			}
		}
		a := Evaluate(r, 100, etag)
		if a.Status != tt.status || a.ContentRange != tt.cr {
			t.Errorf("%s: %d %q, want %d %q", tt.name, a.Status, a.ContentRange, tt.status, tt.cr)
		}
	}
}

// FuzzParseRange checks that whatever the header, Parse never answers a
// range outside the representation, and that its Content-Range is well
// formed.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-0", "bytes=-0", "bytes=-5", "bytes=5-", "bytes=9-3", "items=1-2",
		"bytes=0-1,2-3", "bytes= 1-2 ,", "bytes=99999999999999999999-", "bytes=9227000000000000000-", ""} {
		f.Add(s, int64(3000))
		f.Add(s, int64(0))
	}
	f.Fuzz(func(t *testing.T, value string, size int64) {
		if size < 0 {
			size = -size
			if size < 0 {
				size = 0
			}
		}
		r, res := Parse(value, size)
		switch res {
		case Partial:
			if r.Start < 0 || r.Length < 1 || r.Start+r.Length > size || r.Start+r.Length < r.Start {
				t.Fatalf("Parse(%q, %d) = %+v: outside the representation", value, size, r)
			}
			cr := r.ContentRange(size)
			var a, b, n int64
			rest, ok := strings.CutPrefix(cr, "bytes ")
			ab, sz, ok2 := strings.Cut(rest, "/")
			as, bs, ok3 := strings.Cut(ab, "-")
			a, e1 := strconv.ParseInt(as, 10, 64)
			b, e2 := strconv.ParseInt(bs, 10, 64)
			n, e3 := strconv.ParseInt(sz, 10, 64)
			if !ok || !ok2 || !ok3 || e1 != nil || e2 != nil || e3 != nil || a > b || b >= n {
				t.Fatalf("Parse(%q, %d): bad Content-Range %q", value, size, cr)
			}
		case Whole, Unsatisfiable:
		default:
			t.Fatalf("Parse(%q, %d): result %d", value, size, res)
		}
	})
}
