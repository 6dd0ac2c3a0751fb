package jmap

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/httprange"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/resource"
)

// maxDataSources bounds the parts of one Blob/upload (RFC 9404 §4.1).
const maxDataSources = 64

// openBlob opens a blob: a Content-ID the user holds, or "M" and a message
// id for the message as RFC 5322 (size -1: not known until it is read).
func (c *call) openBlob(id string) (io.ReadCloser, int64, error) {
	return c.h.openBlob(c, id)
}

func (h *Handler) openBlob(c *call, id string) (io.ReadCloser, int64, error) {
	if strings.HasPrefix(id, "M") && len(id) != 43 {
		rc, err := h.mb.Raw(c.ctx, id[1:])
		return rc, -1, err
	}
	cid, err := resource.ParseID(id)
	if err != nil {
		return nil, 0, errs.E(errs.NotFound, "not_found", "no blob %q", id)
	}
	rc, up, err := h.mb.OpenHeld(c.ctx, cid)
	return rc, up.Size, err
}

func (h *Handler) upload(w http.ResponseWriter, r *http.Request) {
	p, err := auth.Must(r.Context())
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	if r.PathValue("accountId") != accountID(p) {
		problem(w, http.StatusNotFound, "about:blank", "no such account", "")
		return
	}
	release, ok := h.acquire(h.upBusy, p.UserID, h.lim.MaxConcurrentUpload)
	if !ok {
		problem(w, http.StatusTooManyRequests, errLimit, fmt.Sprintf("at most %d uploads at once", h.lim.MaxConcurrentUpload), "maxConcurrentUpload")
		return
	}
	defer release()
	if r.ContentLength > h.lim.MaxSizeUpload {
		problem(w, http.StatusRequestEntityTooLarge, errLimit, fmt.Sprintf("a blob is at most %d bytes", h.lim.MaxSizeUpload), "maxSizeUpload")
		return
	}
	body := http.MaxBytesReader(w, r.Body, h.lim.MaxSizeUpload)
	up, err := h.mb.Upload(r.Context(), body, mailbox.UploadOptions{Size: r.ContentLength})
	if err != nil {
		if errs.Is(err, errs.TooLarge) {
			problem(w, http.StatusRequestEntityTooLarge, errLimit, fmt.Sprintf("a blob is at most %d bytes", h.lim.MaxSizeUpload), "maxSizeUpload")
			return
		}
		errs.WriteHTTP(w, err)
		return
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	writeJSON(w, http.StatusCreated, map[string]any{"accountId": accountID(p), "blobId": string(up.ContentID), "type": ct, "size": up.Size})
}

// download streams a blob (RFC 8620 §6.2): a resource with Range (package
// httprange), a whole message as it renders.
func (h *Handler) download(w http.ResponseWriter, r *http.Request) {
	p, err := auth.Must(r.Context())
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	if r.PathValue("accountId") != accountID(p) {
		problem(w, http.StatusNotFound, "about:blank", "no such account", "")
		return
	}
	c := &call{h: h, ctx: r.Context(), p: p}
	id := r.PathValue("blobId")
	rc, size, err := h.openBlob(c, id)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	defer rc.Close()
	ct := r.URL.Query().Get("type")
	if _, _, err := mime.ParseMediaType(ct); err != nil {
		ct = "application/octet-stream"
	}
	content := func(hdr http.Header) {
		hdr.Set("Content-Type", ct)
		hdr.Set("Content-Security-Policy", "sandbox; default-src 'none'")
		hdr.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": r.PathValue("name")}))
	}
	if size < 0 {
		content(w.Header())
		w.Header().Set("Cache-Control", "private, no-cache")
		if r.Method == http.MethodHead {
			return
		}
		if _, err := io.Copy(w, rc); err != nil {
			panic(http.ErrAbortHandler) // a cut message must not pass for whole
		}
		return
	}
	w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
	httprange.Serve(w, r, rc, size, `"`+id+`"`, httprange.Options{Content: content, Classify: resource.ReadFailure})
}

// blobGet is Blob/get (RFC 9404 §4.2): data as text or base64 (a range of
// it by offset and length), size, and digest:sha-256, which for a
// resource is its Content-ID's bytes, read from no byte of the blob.
func (c *call) blobGet(args json.RawMessage) (any, error) {
	var a struct {
		GetArgs
		Offset *int64 `json:"offset"`
		Length *int64 `json:"length"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.IDs == nil {
		return nil, merr("requestTooLarge", "Blob/get needs ids")
	}
	if err := c.checkGet(&a.GetArgs); err != nil {
		return nil, err
	}
	props := []string{"data", "size"}
	if a.Properties != nil {
		props = *a.Properties
	}
	off, n := int64(0), int64(-1)
	if a.Offset != nil {
		off = *a.Offset
	}
	if a.Length != nil {
		n = *a.Length
	}
	if off < 0 || a.Length != nil && n < 0 {
		return nil, merr("invalidArguments", "offset and length must not be negative")
	}
	out := map[string]any{"accountId": c.acct, "list": []any{}, "notFound": []string{}}
	list, nf := []any{}, []string{}
	for _, id := range *a.IDs {
		rc, size, err := c.openBlob(id)
		if err != nil {
			nf = append(nf, id)
			continue
		}
		e := map[string]any{"id": id}
		var data []byte
		needData := false
		for _, p := range props {
			if strings.HasPrefix(p, "data") {
				needData = true
			}
		}
		hash := sha256.New()
		if needData || size < 0 {
			all, err := io.ReadAll(io.TeeReader(io.LimitReader(rc, c.h.lim.MaxSizeRequest+1), hash))
			if err != nil {
				rc.Close()
				return nil, err
			}
			if int64(len(all)) > c.h.lim.MaxSizeRequest && needData {
				rc.Close()
				return nil, merr("requestTooLarge", "a blob of more than %d bytes is read by download, not Blob/get", c.h.lim.MaxSizeRequest)
			}
			io.Copy(hash, rc)
			if size < 0 {
				size = int64(len(all))
			}
			data = all
		}
		rc.Close()
		part := data
		if off >= int64(len(part)) {
			part = nil
		} else {
			part = part[off:]
		}
		trunc := false
		if n >= 0 && int64(len(part)) > n {
			part, trunc = part[:n], true
		}
		if off+int64(len(part)) < size && a.Offset != nil || trunc {
			e["isTruncated"] = trunc
		}
		for _, p := range props {
			switch p {
			case "data", "data:asText":
				if utf8.Valid(part) {
					e["data:asText"] = string(part)
				} else {
					e["data:asText"] = nil
					e["isEncodingProblem"] = true
				}
				if p == "data" && !utf8.Valid(part) {
					e["data:asBase64"] = base64.StdEncoding.EncodeToString(part)
				}
			case "data:asBase64":
				e["data:asBase64"] = base64.StdEncoding.EncodeToString(part)
			case "size":
				e["size"] = size
			case "digest:sha-256":
				if cid, err := resource.ParseID(id); err == nil {
					raw, _ := base64.RawURLEncoding.DecodeString(string(cid))
					e["digest:sha-256"] = base64.StdEncoding.EncodeToString(raw)
				} else {
					e["digest:sha-256"] = base64.StdEncoding.EncodeToString(hash.Sum(nil))
				}
			default:
				return nil, merr("invalidArguments", "Blob/get has no property %q", p)
			}
		}
		list = append(list, e)
	}
	out["list"], out["notFound"] = list, nf
	return out, nil
}

// blobUpload is Blob/upload (RFC 9404 §4.1): a blob from text, base64 and
// ranges of blobs the user holds.
func (c *call) blobUpload(args json.RawMessage) (any, error) {
	var a struct {
		AccountID string `json:"accountId"`
		Create    map[string]struct {
			Data []struct {
				Text   *string `json:"data:asText"`
				Base64 *string `json:"data:asBase64"`
				BlobID *string `json:"blobId"`
				Offset *int64  `json:"offset"`
				Length *int64  `json:"length"`
			} `json:"data"`
			Type string `json:"type"`
		} `json:"create"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if len(a.Create) > c.h.lim.MaxObjectsInSet {
		return nil, merr("requestTooLarge", "at most %d blobs", c.h.lim.MaxObjectsInSet)
	}
	created, notCreated := map[string]any{}, map[string]*SetError{}
	for cid, b := range a.Create {
		if len(b.Data) > maxDataSources {
			notCreated[cid] = setErr("tooManyDataSources", fmt.Sprintf("at most %d", maxDataSources))
			continue
		}
		var buf bytes.Buffer
		var fail *SetError
		for _, d := range b.Data {
			switch {
			case d.Text != nil:
				buf.WriteString(*d.Text)
			case d.Base64 != nil:
				raw, err := base64.StdEncoding.DecodeString(*d.Base64)
				if err != nil {
					fail = setErr("invalidProperties", "data:asBase64 is not base64", "data")
				}
				buf.Write(raw)
			case d.BlobID != nil:
				rc, _, err := c.openBlob(c.resolveID(*d.BlobID))
				if err != nil {
					fail = setErr("blobNotFound", "no blob "+*d.BlobID)
					break
				}
				if d.Offset != nil {
					io.CopyN(io.Discard, rc, *d.Offset)
				}
				var src io.Reader = rc
				if d.Length != nil {
					src = io.LimitReader(rc, *d.Length)
				}
				io.Copy(&buf, io.LimitReader(src, c.h.lim.MaxSizeRequest+1))
				rc.Close()
			default:
				fail = setErr("invalidProperties", "a data source is data:asText, data:asBase64 or a blobId", "data")
			}
			if buf.Len() > int(c.h.lim.MaxSizeRequest) {
				fail = setErr("tooLarge", "a Blob/upload is at most maxSizeRequest; upload larger blobs to the upload URL")
			}
			if fail != nil {
				break
			}
		}
		if fail != nil {
			notCreated[cid] = fail
			continue
		}
		up, err := c.h.mb.Upload(c.ctx, bytes.NewReader(buf.Bytes()), mailbox.UploadOptions{Size: int64(buf.Len())})
		if err != nil {
			notCreated[cid] = toSetError(err)
			continue
		}
		c.created[cid] = string(up.ContentID)
		created[cid] = map[string]any{"id": string(up.ContentID), "type": b.Type, "size": up.Size}
	}
	var nc any = notCreated
	if len(notCreated) == 0 {
		nc = nil
	}
	var cr any = created
	if len(created) == 0 {
		cr = nil
	}
	return map[string]any{"accountId": c.acct, "created": cr, "notCreated": nc}, nil
}

// blobLookup is Blob/lookup (RFC 9404 §4.3): which Emails, Mailboxes and
// Threads reference each blob.
func (c *call) blobLookup(args json.RawMessage) (any, error) {
	var a struct {
		AccountID string   `json:"accountId"`
		TypeNames []string `json:"typeNames"`
		IDs       []string `json:"ids"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	for _, t := range a.TypeNames {
		if t != "Email" && t != "Mailbox" && t != "Thread" {
			return nil, merr("unknownDataType", "no type %q", t)
		}
	}
	s, err := c.all()
	if err != nil {
		return nil, err
	}
	list, nf := []any{}, []string{}
	for _, id := range a.IDs {
		id = c.resolveID(id)
		found := map[string]map[string]bool{}
		for _, t := range a.TypeNames {
			found[t] = map[string]bool{}
		}
		hitAny := false
		for _, m := range s.msgs {
			hit := messageBlobID(m.ID) == id
			_, _, _, all := leaves(m)
			for _, p := range all {
				if *p.BlobID == id {
					hit = true
				}
			}
			if !hit {
				continue
			}
			hitAny = true
			for t, set := range found {
				switch t {
				case "Email":
					set[m.ID] = true
				case "Mailbox":
					set[mailboxID(m.Folder)] = true
				case "Thread":
					set[threadID(m)] = true
				}
			}
		}
		if !hitAny {
			nf = append(nf, id)
			continue
		}
		ids := map[string][]string{}
		for t, set := range found {
			ids[t] = []string{}
			for x := range set {
				ids[t] = append(ids[t], x)
			}
		}
		list = append(list, map[string]any{"id": id, "matchedIds": ids})
	}
	return map[string]any{"accountId": c.acct, "list": list, "notFound": nf}, nil
}

// blobCopy is Blob/copy (RFC 8620 §6.3): there is one account per user.
func (c *call) blobCopy(args json.RawMessage) (any, error) {
	return c.emailCopy(args)
}
