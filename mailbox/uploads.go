package mailbox

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/upload"
)

// NewUploadSession is the body of POST /api/v1/uploads.
type NewUploadSession struct {
	Size      int64       `json:"size"`
	ContentID resource.ID `json:"content_id,omitempty"` // the declared digest, optional
}

// UploadSession is a resumable upload as the API shows it
// (docs/PROTOCOL.md §8.14). ContentID is set once the resource is
// committed; until then Offset says how many bytes the server holds.
type UploadSession struct {
	UploadID  string      `json:"upload_id"`
	Offset    int64       `json:"offset"`
	Size      int64       `json:"size"`
	ContentID resource.ID `json:"content_id,omitempty"`
}

func sessionView(s upload.Session) UploadSession {
	return UploadSession{UploadID: s.ID, Offset: s.Offset, Size: s.Size, ContentID: s.ContentID}
}

var errNoUpload = errs.E(errs.NotFound, "not_found", "no such upload")

// errOffset is the 409 of a PATCH at the wrong offset; the handler adds the
// Upload-Offset header from the session returned with it.
func errOffset(cur int64) error {
	return errs.E(errs.Conflict, "offset_mismatch", "the upload is at offset %d: send the bytes from there", cur)
}

// staging returns the configured staging or the error that uploads are
// not offered.
func (s *Service) staging() (upload.Staging, error) {
	if s.cfg.Staging == nil {
		return nil, errs.E(errs.NotFound, "no_route", "resumable uploads are not offered by this server")
	}
	return s.cfg.Staging, nil
}

// session returns the user's live session with the id, or errNoUpload.
func (s *Service) session(ctx context.Context, st upload.Staging, userID int64, id string) (upload.Session, error) {
	sess, err := st.Get(ctx, id)
	if errors.Is(err, upload.ErrNotFound) {
		return upload.Session{}, errNoUpload
	} else if err != nil {
		return upload.Session{}, internal(err, "reading the upload failed")
	}
	if sess.UserID != userID || !sess.Expires.After(s.now()) {
		return upload.Session{}, errNoUpload // not yours answers like none
	}
	return sess, nil
}

// CreateUpload implements API.
func (s *Service) CreateUpload(ctx context.Context, req NewUploadSession) (UploadSession, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return UploadSession{}, err
	}
	st, err := s.staging()
	if err != nil {
		return UploadSession{}, err
	}
	if req.Size < 0 {
		return UploadSession{}, errs.E(errs.Invalid, "bad_size", "size must be a non-negative integer")
	}
	if s.cfg.MaxUpload > 0 && req.Size > s.cfg.MaxUpload {
		return UploadSession{}, errs.E(errs.TooLarge, "too_large", "the resource is larger than this server accepts (%d bytes)", s.cfg.MaxUpload)
	}
	if req.ContentID != "" {
		if _, err := resource.ParseID(string(req.ContentID)); err != nil {
			return UploadSession{}, errs.E(errs.Invalid, "bad_content_id", "content_id must be 43 base64url characters")
		}
	}
	now := s.now()
	sess := upload.Session{ID: upload.NewID(), UserID: p.UserID, Size: req.Size, Want: req.ContentID,
		Created: now, Expires: now.Add(s.cfg.UploadTTL)}
	if err := st.Create(ctx, sess); err != nil {
		return UploadSession{}, storeErr(err, "creating the upload failed")
	}
	s.log.Debug("upload session", "user", p.Address, "upload", sess.ID, "size", sess.Size)
	if sess.Size == 0 { // nothing to wait for
		sess, err = s.commitUpload(ctx, st, sess)
		if err != nil {
			return UploadSession{}, err
		}
	}
	return sessionView(sess), nil
}

// UploadStatus implements API.
func (s *Service) UploadStatus(ctx context.Context, id string) (UploadSession, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return UploadSession{}, err
	}
	st, err := s.staging()
	if err != nil {
		return UploadSession{}, err
	}
	sess, err := s.session(ctx, st, p.UserID, id)
	if err != nil {
		return UploadSession{}, err
	}
	return sessionView(sess), nil
}

// AppendUpload implements API. On offset_mismatch the returned session
// carries the current offset.
func (s *Service) AppendUpload(ctx context.Context, id string, offset int64, r io.Reader) (UploadSession, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return UploadSession{}, err
	}
	st, err := s.staging()
	if err != nil {
		return UploadSession{}, err
	}
	if _, err := s.session(ctx, st, p.UserID, id); err != nil {
		return UploadSession{}, err
	}
	sess, err := st.Append(ctx, id, offset, r)
	switch {
	case err == nil:
	case errors.Is(err, upload.ErrNotFound):
		return UploadSession{}, errNoUpload // deleted meanwhile
	case errors.Is(err, upload.ErrOffset):
		return sessionView(sess), errOffset(sess.Offset)
	case errors.Is(err, upload.ErrPastSize):
		return sessionView(sess), errs.Wrap(err, errs.TooLarge, "too_large",
			"the bytes run past the upload's declared size; those up to it are kept")
	case errs.NoSpace(err):
		// The staging gave this request's bytes back (upload.Staging);
		// the session is where the answer's Upload-Offset says.
		s.log.Warn("upload: out of space", "user", p.Address, "upload", id, "offset", sess.Offset, "err", err)
		if sess.ID == "" {
			return UploadSession{}, errs.InsufficientStorageError(err)
		}
		return sessionView(sess), errs.InsufficientStorageError(err)
	case sess.ID != "" && ctx.Err() == nil:
		// The body broke off (a dropped connection): what arrived counts.
		s.log.Debug("upload interrupted", "user", p.Address, "upload", id, "offset", sess.Offset, "err", err)
		return sessionView(sess), errs.Wrap(err, errs.Invalid, "upload_incomplete",
			"the body ended early; the bytes received are kept: resume from the upload's offset")
	case sess.ID != "":
		return sessionView(sess), errs.Wrap(err, errs.Temporary, "cancelled", "the request was cancelled; the bytes received are kept")
	default:
		return UploadSession{}, storeErr(err, "staging the bytes failed")
	}
	if sess.Full() && sess.ContentID == "" {
		if sess, err = s.commitUpload(ctx, st, sess); err != nil {
			return UploadSession{}, err
		}
	}
	return sessionView(sess), nil
}

// commitUpload checks a full session's digest against the declared one
// and commits its bytes exactly as Upload does (the resource store hashes
// them again as it reads: a staged file that does not match the digest
// computed as the bytes arrived is refused, never stored under it).
func (s *Service) commitUpload(ctx context.Context, st upload.Staging, sess upload.Session) (upload.Session, error) {
	mismatch := func(err error) (upload.Session, error) {
		if derr := st.Delete(context.WithoutCancel(ctx), sess.ID); derr != nil {
			s.log.Error("deleting a failed upload", "upload", sess.ID, "err", derr)
		}
		return upload.Session{}, errs.Wrap(err, errs.Invalid, "digest_mismatch",
			"the bytes do not match the declared Content-ID; the upload is deleted")
	}
	if sess.Want != "" && sess.Want != sess.Digest {
		return mismatch(errors.New("declared " + string(sess.Want) + ", got " + string(sess.Digest)))
	}
	rc, err := st.Open(ctx, sess.ID)
	if err != nil {
		return upload.Session{}, storeErr(err, "reading the staged upload failed")
	}
	up, err := s.Upload(ctx, rc, UploadOptions{Digest: sess.Digest, Size: sess.Size})
	rc.Close()
	if errs.CodeOf(err) == "digest_mismatch" {
		s.log.Error("staged upload does not match its digest", "upload", sess.ID)
		return mismatch(err)
	} else if errs.NoSpace(err) {
		// Kept, the staged copy would hold the space that its commit
		// lacks for the session's lifetime: the upload is deleted.
		if derr := st.Delete(context.WithoutCancel(ctx), sess.ID); derr != nil {
			s.log.Error("deleting an upload that did not fit", "upload", sess.ID, "err", derr)
		}
		s.log.Warn("upload: out of space committing", "upload", sess.ID, "size", sess.Size, "err", err)
		return upload.Session{}, errs.InsufficientStorageError(err)
	} else if err != nil {
		return upload.Session{}, err
	}
	done, err := st.Complete(ctx, sess.ID, up.ContentID)
	if err != nil {
		return upload.Session{}, storeErr(err, "completing the upload failed")
	}
	return done, nil
}

// DeleteUpload implements API.
func (s *Service) DeleteUpload(ctx context.Context, id string) error {
	p, err := auth.Must(ctx)
	if err != nil {
		return err
	}
	st, err := s.staging()
	if err != nil {
		return err
	}
	if _, err := s.session(ctx, st, p.UserID, id); err != nil {
		return err
	}
	if err := st.Delete(ctx, id); err != nil {
		return storeErr(err, "deleting the upload failed")
	}
	return nil
}

// UploadOffsetHeader is the header of a PATCH's offset and of every upload
// answer's current offset (as in the tus protocol, tus.io).
const UploadOffsetHeader = "Upload-Offset"

func writeSession(w http.ResponseWriter, status int, u UploadSession) {
	w.Header().Set(UploadOffsetHeader, strconv.FormatInt(u.Offset, 10))
	if u.ContentID != "" && status == http.StatusOK {
		status = http.StatusCreated
	}
	writeJSON(w, status, u)
}

func (h *handler) createUpload(w http.ResponseWriter, r *http.Request) {
	doc, err := readDoc(w, r)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	var req NewUploadSession
	if err := decodeBody(doc, &req, `the body must be {"size": N, "content_id": "CID"?}`, "size"); err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	u, err := h.api.CreateUpload(r.Context(), req)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	w.Header().Set("Location", "/api/v1/uploads/"+u.UploadID)
	writeSession(w, http.StatusCreated, u)
}

func (h *handler) uploadStatus(w http.ResponseWriter, r *http.Request) {
	u, err := h.api.UploadStatus(r.Context(), r.PathValue("upload_id"))
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeSession(w, http.StatusOK, u)
}

func (h *handler) appendUpload(w http.ResponseWriter, r *http.Request) {
	if len(r.Header.Values(UploadOffsetHeader)) > 1 {
		// Two offsets are two answers to "where do these bytes go": a
		// proxy and the server could each take another (RFC 9110 §5.3
		// forbids repeating a field that is not a list).
		errs.WriteHTTP(w, errs.E(errs.Invalid, "repeated_header", "Upload-Offset must be given once"))
		return
	}
	off, err := upload.ParseOffset(r.Header.Get(UploadOffsetHeader))
	if err != nil {
		errs.WriteHTTP(w, errs.E(errs.Invalid, "bad_offset", "Upload-Offset must be the decimal offset the bytes start at"))
		return
	}
	body := &bodyReader{r: r.Body}
	if r.ContentLength > 0 {
		// A declared length that runs past the size is refused before
		// reading; the status check is cheap and saves a wasted body.
		if u, err := h.api.UploadStatus(r.Context(), r.PathValue("upload_id")); err == nil && u.Offset == off &&
			off+r.ContentLength > u.Size {
			errs.WriteHTTP(w, errs.E(errs.TooLarge, "too_large", "the body runs past the upload's declared size (%d bytes)", u.Size))
			return
		}
	}
	u, err := h.api.AppendUpload(r.Context(), r.PathValue("upload_id"), off, body)
	if err != nil {
		if code := errs.CodeOf(err); body.err != nil && (code == "upload_incomplete" || code == "cancelled") {
			// The body failed (net/http cancels the request's context
			// when its connection does): the client's doing, not 503.
			err = bodyError(body.err, "upload_incomplete", "the body ended early; the bytes received are kept: resume from the upload's offset")
		}
		if u.UploadID != "" {
			w.Header().Set(UploadOffsetHeader, strconv.FormatInt(u.Offset, 10))
		}
		errs.WriteHTTP(w, err)
		return
	}
	writeSession(w, http.StatusOK, u)
}

func (h *handler) deleteUpload(w http.ResponseWriter, r *http.Request) {
	if err := h.api.DeleteUpload(r.Context(), r.PathValue("upload_id")); err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
