package errs

import (
	"fmt"
	"net/http"
	"os"
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
