package httprange

import (
	"bytes"
	"io"
	"net/http"
	"strconv"

	"github.com/pullmail/pullmail/errs"
)

// PeekSize is how much of a body Serve reads before it answers: one chunk
// of the resource stores (resource/fsstore verifies 64 KiB at a time), so
// that a copy damaged where the answer starts is refused with an error
// status instead of a 200 whose body is then cut.
const PeekSize = 64 << 10

// Options are the caller's parts of Serve's answer.
type Options struct {
	// Content, if set, adds the headers that only a 200 or 206 carries
	// (Content-Type, Content-Disposition, a CSP): not a 304, 412 or 416.
	Content func(http.Header)
	// Classify turns a failure to read the start of the body (a damaged
	// copy, a store gone) into the error answered; nil answers it as is.
	Classify func(error) error
	// Retrieval applies the conditional and range headers whatever the
	// method: the federation fetch is a POST only because its body carries
	// the envelope that authorizes it (docs/PROTOCOL.md §11.3), and a pull
	// resumes with Range.
	Retrieval bool
}

// Serve answers a GET or HEAD for body, a representation of size bytes
// with the strong entity tag etag, by Evaluate's rules, in the errs JSON
// format: 304, 412 precondition_failed, 416 range_not_satisfiable (with
// Content-Range: bytes */SIZE), or 200/206 with Content-Length. Range
// needs body to be an io.ReadSeeker; for a body that is not, Range is
// ignored. ETag, and Accept-Ranges for a seekable body, are on every
// answer. The caller sets the headers that are the same on all of them
// (Cache-Control) beforehand.
//
// Before the status line, Serve reads the first PeekSize bytes of what it
// will send: a failure there is answered as an error (through
// opt.Classify) instead of a 200 with a cut body. A failure later can
// only cut the body short of its Content-Length, which every client sees.
func Serve(w http.ResponseWriter, r *http.Request, body io.Reader, size int64, etag string, opt Options) {
	if opt.Retrieval && r.Method != http.MethodGet && r.Method != http.MethodHead {
		get := *r
		get.Method = http.MethodGet
		r = &get
	}
	rs, seekable := body.(io.ReadSeeker)
	a := Answer{Status: http.StatusOK}
	if seekable {
		a = Evaluate(r, size, etag)
	}
	hdr := w.Header()
	hdr.Set("ETag", etag)
	if seekable {
		hdr.Set("Accept-Ranges", "bytes")
	}
	switch a.Status {
	case http.StatusNotModified:
		w.WriteHeader(http.StatusNotModified)
		return
	case http.StatusPreconditionFailed:
		errs.WriteBody(w, a.Status, errs.Body{Error: errs.Detail{Code: "precondition_failed",
			Message: "the resource does not match If-Match"}})
		return
	case http.StatusRequestedRangeNotSatisfiable:
		hdr.Set("Content-Range", a.ContentRange)
		errs.WriteBody(w, a.Status, errs.Body{Error: errs.Detail{Code: "range_not_satisfiable",
			Message: "the Range is outside the resource (see Content-Range)"}})
		return
	}
	n := size
	if a.Status == http.StatusPartialContent {
		if _, err := rs.Seek(a.Range.Start, io.SeekStart); err != nil {
			fail(w, opt, err)
			return
		}
		body, n = io.LimitReader(rs, a.Range.Length), a.Range.Length
	}
	if r.Method == http.MethodHead {
		body = nil
	} else {
		head := make([]byte, min(n, PeekSize))
		k, err := io.ReadFull(body, head)
		if err != nil { // io.EOF, io.ErrUnexpectedEOF: the store holds fewer bytes than it said
			fail(w, opt, err)
			return
		}
		body = io.MultiReader(bytes.NewReader(head[:k]), body)
	}
	if opt.Content != nil {
		opt.Content(hdr)
	}
	if a.Status == http.StatusPartialContent {
		hdr.Set("Content-Range", a.ContentRange)
	}
	hdr.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(a.Status)
	if body != nil {
		io.Copy(w, body) // a failure cuts the body short of Content-Length: the client sees it
	}
}

func fail(w http.ResponseWriter, opt Options, err error) {
	hdr := w.Header()
	hdr.Del("ETag")
	hdr.Del("Accept-Ranges")
	if opt.Classify != nil {
		err = opt.Classify(err)
	}
	errs.WriteHTTP(w, err)
}
