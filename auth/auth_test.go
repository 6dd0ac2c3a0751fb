package auth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/errs"
)

// fixed is an Authenticator that always answers the same.
type fixed struct {
	p   Principal
	err error
}

func (f fixed) Authenticate(context.Context, *http.Request) (Principal, error) { return f.p, f.err }

func refuse(code string) fixed { return fixed{err: errs.E(errs.Unauthorized, code, "%s", code)} }

func TestChain(t *testing.T) {
	alice := Principal{UserID: 7, Address: "alice@a.test"}
	for _, tc := range []struct {
		name  string
		chain Chain
		code  string
	}{
		{"first success wins", Chain{refuse("missing_token"), fixed{p: alice}}, ""},
		{"no credentials anywhere", Chain{refuse("missing_token"), refuse("missing_token")}, "missing_token"},
		{"the recogniser's error, not a later one", Chain{refuse("invalid_dpop_proof"), refuse("invalid_token")}, "invalid_dpop_proof"},
		{"a later recogniser", Chain{refuse("missing_token"), refuse("token_expired")}, "token_expired"},
		{"empty chain", Chain{}, "missing_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.chain.Authenticate(context.Background(), httptest.NewRequest("GET", "/", nil))
			if tc.code == "" {
				if err != nil || p != alice {
					t.Fatalf("got %v %v", p, err)
				}
				return
			}
			if errs.CodeOf(err) != tc.code {
				t.Fatalf("code %q, want %q", errs.CodeOf(err), tc.code)
			}
		})
	}
}

func TestMiddlewareChallenge(t *testing.T) {
	for _, tc := range []struct {
		authz, code, want string
	}{
		{"", "missing_token", `Bearer realm="pullmail"`},
		{"Bearer x", "invalid_token", `Bearer realm="pullmail", error="invalid_token"`},
		{"DPoP x", "invalid_token", `DPoP algs=`},
		{"DPoP x", "invalid_dpop_proof", `error="invalid_dpop_proof"`},
		{"Bearer x", "use_dpop_nonce", `DPoP algs=`},
	} {
		h := Middleware(refuse(tc.code), http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Fatal("let through") }))
		r := httptest.NewRequest("GET", "/api/v1/me", nil)
		if tc.authz != "" {
			r.Header.Set("Authorization", tc.authz)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if got := w.Header().Get("WWW-Authenticate"); w.Code != 401 || !strings.Contains(got, tc.want) {
			t.Errorf("%q %s: %d %q, want %q", tc.authz, tc.code, w.Code, got, tc.want)
		}
	}
}

func TestBearerToken(t *testing.T) {
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer abc": "abc", "Bearer": "", "Basic abc": "", "Bearer a b": ""} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", h)
		if got, ok := BearerToken(r); got != want || ok != (want != "") {
			t.Errorf("%q: %q %v", h, got, ok)
		}
	}
}
