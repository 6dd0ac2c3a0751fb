package errs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestNoSpaceIs507(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
		code string
	}{
		{"bare ENOSPC", &os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}, http.StatusInsufficientStorage, "insufficient_storage"},
		{"wrapped EDQUOT", fmt.Errorf("staging: %w", syscall.EDQUOT), http.StatusInsufficientStorage, "insufficient_storage"},
		{"internal with ENOSPC cause", Wrap(syscall.ENOSPC, Internal, "internal", "x"), http.StatusInsufficientStorage, "insufficient_storage"},
		{"kind wins over cause", Wrap(syscall.ENOSPC, TooLarge, "too_large", "x"), http.StatusRequestEntityTooLarge, "too_large"},
		{"plain error", fmt.Errorf("boom"), http.StatusInternalServerError, "internal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := Public(tc.err)
			if status != tc.want || body.Error.Code != tc.code {
				t.Fatalf("Public = %d %q, want %d %q", status, body.Error.Code, tc.want, tc.code)
			}
			if tc.code == "insufficient_storage" && KindOf(tc.err) != InsufficientStorage {
				t.Fatalf("KindOf = %v", KindOf(tc.err))
			}
		})
	}
	if k := kindFromStatus(507); k != InsufficientStorage {
		t.Fatalf("kindFromStatus(507) = %v", k)
	}
}

// TestRespondLogsCause: an internal error answers "internal error" and
// logs its cause at ERROR with the request's id; a refusal logs nothing.
func TestRespondLogsCause(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		status  int
		logged  bool
		inLog   string
		notSent string
	}{
		{"internal", fmt.Errorf("opening blob: %w", os.ErrPermission), 500, true, "opening blob", "opening blob"},
		{"out of space", fmt.Errorf("writing: %w", syscall.ENOSPC), 507, true, "no space left", "writing"},
		{"refusal", E(NotFound, "not_found", "no such message"), 404, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&logs, nil))
			r := httptest.NewRequest("GET", "/x", nil)
			r = r.WithContext(WithRequestID(r.Context(), "req-42"))
			w := httptest.NewRecorder()
			Respond(w, r, log, tc.err)
			if w.Code != tc.status || w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("answer %d %q", w.Code, w.Header().Get("Content-Type"))
			}
			if tc.notSent != "" && strings.Contains(w.Body.String(), tc.notSent) {
				t.Fatalf("the cause leaked to the client: %s", w.Body)
			}
			if !tc.logged {
				if logs.Len() != 0 {
					t.Fatalf("a refusal was logged: %s", logs.String())
				}
				return
			}
			var rec struct {
				Level, Req, Err string
			}
			if err := json.Unmarshal(logs.Bytes(), &rec); err != nil {
				t.Fatalf("log %q: %v", logs.String(), err)
			}
			if rec.Level != "ERROR" || rec.Req != "req-42" || !strings.Contains(rec.Err, tc.inLog) {
				t.Fatalf("log %s", logs.String())
			}
		})
	}
}
