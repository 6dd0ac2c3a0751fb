package authz_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
)

// TestExchangeAutoForward: a forwarding hop marked Auto-Submitted:
// auto-forwarded (made by a rule) gets a chained assertion only when the
// forwarder's automatic forwarding policy is "allow" and their forwarding
// policy is not "deny"; a manual hop does not need the automatic policy.
func TestExchangeAutoForward(t *testing.T) {
	x := newXEnv(t)
	b := x.b
	prev := x.assertion(t)
	const bob = "bob@b.test"
	auto := func(value string) placeholder.Header {
		h := forwardHop(t, x.msgid, "Bob <bob@b.test>", "Carol <carol@c.test>", prev)
		h.SetString(federation.HAutoSubmitted, value)
		return h
	}
	autoEHL := append(placeholder.ForwardHop.RequiredEHL(), federation.HAutoSubmitted)
	for _, tc := range []struct {
		name   string
		manual string // the forwarding policy, "" unset
		policy string // the automatic forwarding policy, "" unset
		hdr    placeholder.Header
		ehl    []string
		want   string // "" for success, else the error_description's words
	}{
		{name: "automatic, policy unset (default deny)", hdr: auto(federation.AutoForwarded), ehl: autoEHL,
			want: "forbids automatic forwarding"},
		{name: "automatic, denied", policy: "deny", hdr: auto(federation.AutoForwarded), ehl: autoEHL,
			want: "forbids automatic forwarding"},
		{name: "automatic, allowed", policy: "allow", hdr: auto(federation.AutoForwarded), ehl: autoEHL},
		{name: "automatic allowed, forwarding denied", manual: "deny", policy: "allow", hdr: auto(federation.AutoForwarded),
			ehl: autoEHL, want: "forbids forwarding"},
		{name: "manual, automatic denied", policy: "deny",
			hdr: forwardHop(t, x.msgid, "Bob <bob@b.test>", "Carol <carol@c.test>", prev), ehl: placeholder.ForwardHop.RequiredEHL()},
		{name: "Auto-Submitted not signed", policy: "deny", hdr: auto(federation.AutoForwarded),
			ehl: placeholder.ForwardHop.RequiredEHL(), want: "signed"},
		{name: "Auto-Submitted of another kind", policy: "allow", hdr: auto("auto-replied"), ehl: autoEHL, want: "auto-forwarded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setUserSetting(t, b.d, bob, federation.SettingForwarding, tc.manual)
			setUserSetting(t, b.d, bob, federation.SettingAutoForwarding, tc.policy)
			f := x.forwardForm(t, prev, tc.hdr)
			f.Set("ehl", jsonString(t, tc.ehl))
			r := x.asB.post(t, f, x.mtaB.proof(t, b.d.URL, b.clock.Now()))
			if tc.want != "" {
				wantOAuthError(t, r, 400, "invalid_request")
				if !strings.Contains(r.Description, tc.want) {
					t.Errorf("error_description %q, want it to say %q", r.Description, tc.want)
				}
				return
			}
			if r.Status != 200 {
				t.Fatalf("refused: %+v", r)
			}
			c := claimsOf(t, r.AccessToken)
			if c.EH == nil || !slices.Equal(c.EH.EHL, tc.ehl) || c.Hop != 2 {
				t.Errorf("claims: %+v", c)
			}
		})
	}
}

// TestAutoForwardAllowed is the policy as the mailbox and the AS read it:
// the user's own settings, by their ID.
func TestAutoForwardAllowed(t *testing.T) {
	const u, other = 7, 8
	for _, tc := range []struct {
		settings settings
		want     bool
	}{
		{nil, false},
		{settings{{u, federation.SettingAutoForwarding}: "allow"}, true},
		{settings{{u, federation.SettingAutoForwarding}: "deny"}, false},
		{settings{{u, federation.SettingAutoForwarding}: "yes"}, false},
		{settings{{u, federation.SettingAutoForwarding}: "allow", {u, federation.SettingForwarding}: "deny"}, false},
		{settings{{u, federation.SettingAutoForwarding}: "allow", {u, federation.SettingForwarding}: "allow"}, true},
		{settings{{other, federation.SettingAutoForwarding}: "allow"}, false},
	} {
		got, err := federation.AutoForwardAllowed(context.Background(), tc.settings, u)
		if err != nil || got != tc.want {
			t.Errorf("%v: %v, %v; want %v", tc.settings, got, err, tc.want)
		}
	}
}

type settingKey struct {
	user int64
	name string
}

type settings map[settingKey]string

func (s settings) UserSetting(_ context.Context, user int64, name string) (string, error) {
	if v, ok := s[settingKey{user, name}]; ok {
		return v, nil
	}
	return "", meta.ErrNotFound
}
