package httprange_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pullmail/pullmail/httprange"
	"github.com/pullmail/pullmail/resource"
)

// damagedAt reads like the bytes of data until offset bad, where it fails
// as a resource store does on a chunk that fails its check.
// (Its reader is a field, not embedded, so that bytes.Reader's WriteTo
// cannot bypass Read.)
type damagedAt struct {
	r   *bytes.Reader
	bad int64
}

func (d damagedAt) Seek(off int64, whence int) (int64, error) { return d.r.Seek(off, whence) }

func (d damagedAt) Read(p []byte) (int, error) {
	pos, _ := d.r.Seek(0, io.SeekCurrent)
	if pos >= d.bad {
		return 0, fmt.Errorf("chunk at %d: %w", pos, resource.ErrDamaged)
	}
	if int64(len(p)) > d.bad-pos {
		p = p[:d.bad-pos]
	}
	return d.r.Read(p)
}

func TestServe(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 20000) // 200,000 bytes: four store chunks
	const etag = `"abc"`
	size := int64(len(data))
	for _, tc := range []struct {
		name      string
		method    string
		hdr       http.Header
		body      func() io.Reader
		retrieval bool
		status    int
		code      string // error answers
		want      []byte // the body of a 200 or 206 (all of it, or its start when cut)
		cut       bool   // the body ends short of Content-Length
		rangeHdr  string // Content-Range
	}{
		{name: "whole", method: "GET", body: func() io.Reader { return bytes.NewReader(data) }, status: 200, want: data},
		{name: "head", method: "HEAD", body: func() io.Reader { return bytes.NewReader(data) }, status: 200},
		{name: "range", method: "GET", hdr: http.Header{"Range": {"bytes=100-199"}}, body: func() io.Reader { return bytes.NewReader(data) },
			status: 206, want: data[100:200], rangeHdr: "bytes 100-199/200000"},
		{name: "range on a POST is ignored", method: "POST", hdr: http.Header{"Range": {"bytes=100-199"}}, body: func() io.Reader { return bytes.NewReader(data) },
			status: 200, want: data},
		{name: "range on a retrieval POST", method: "POST", hdr: http.Header{"Range": {"bytes=199990-"}}, retrieval: true,
			body: func() io.Reader { return bytes.NewReader(data) }, status: 206, want: data[199990:], rangeHdr: "bytes 199990-199999/200000"},
		{name: "not modified", method: "GET", hdr: http.Header{"If-None-Match": {etag}}, body: func() io.Reader { return bytes.NewReader(data) }, status: 304},
		{name: "precondition", method: "GET", hdr: http.Header{"If-Match": {`"other"`}}, body: func() io.Reader { return bytes.NewReader(data) },
			status: 412, code: "precondition_failed"},
		{name: "unsatisfiable", method: "GET", hdr: http.Header{"Range": {"bytes=-0"}}, body: func() io.Reader { return bytes.NewReader(data) },
			status: 416, code: "range_not_satisfiable", rangeHdr: "bytes */200000"},
		{name: "damaged at the start", method: "GET", body: func() io.Reader { return damagedAt{bytes.NewReader(data), 10} },
			status: 503, code: "resource_damaged"},
		{name: "damaged where the range starts", method: "GET", hdr: http.Header{"Range": {"bytes=70000-"}},
			body: func() io.Reader { return damagedAt{bytes.NewReader(data), 65536} }, status: 503, code: "resource_damaged"},
		{name: "damaged later: cut after the intact bytes", method: "GET", body: func() io.Reader { return damagedAt{bytes.NewReader(data), 131072} },
			status: 200, want: data[:131072], cut: true},
		{name: "shorter than it says", method: "GET", body: func() io.Reader { return bytes.NewReader(data[:10]) }, status: 500, code: "internal"},
		{name: "not seekable: whole, range ignored", method: "GET", hdr: http.Header{"Range": {"bytes=0-0"}},
			body: func() io.Reader { return io.MultiReader(bytes.NewReader(data)) }, status: 200, want: data},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				httprange.Serve(w, r, tc.body(), size, etag, httprange.Options{
					Content:   func(h http.Header) { h.Set("Content-Type", "application/octet-stream") },
					Classify:  resource.ReadFailure,
					Retrieval: tc.retrieval,
				})
			})
			srv := httptest.NewServer(h)
			defer srv.Close()
			req, _ := http.NewRequest(tc.method, srv.URL, nil)
			for k, v := range tc.hdr {
				req.Header[k] = v
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %.200s", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("Content-Range"); got != tc.rangeHdr {
				t.Errorf("Content-Range %q, want %q", got, tc.rangeHdr)
			}
			if tc.code != "" {
				var b struct{ Error struct{ Code string } }
				if json.Unmarshal(body, &b) != nil || b.Error.Code != tc.code || resp.Header.Get("Content-Type") != "application/json" {
					t.Fatalf("error answer %s %q, want code %s", resp.Header.Get("Content-Type"), body, tc.code)
				}
				if resp.Header.Get("ETag") != "" && tc.status >= 500 {
					t.Errorf("a failed read answered with the ETag of the content")
				}
				return
			}
			if tc.cut != (rerr != nil) {
				t.Fatalf("read error %v, cut %v", rerr, tc.cut)
			}
			if !bytes.Equal(body, tc.want) {
				t.Fatalf("body of %d bytes, want %d", len(body), len(tc.want))
			}
			if resp.Header.Get("ETag") != etag {
				t.Errorf("ETag %q", resp.Header.Get("ETag"))
			}
			if tc.status == 200 || tc.status == 206 {
				if resp.Header.Get("Content-Type") != "application/octet-stream" {
					t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
				}
			}
		})
	}
}
