package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
)

// TestUserForwardingPolicy: 'pullmail user forwarding' shows and sets both
// policies, the positional form as before and --auto beside it.
func TestUserForwardingPolicy(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (int, string, string) {
		env, out, errb := testEnv(nil, false)
		return Main(context.Background(), env, args), out.String(), errb.String()
	}
	if c, _, e := run("user", "add", "--data", dir, "carol@c.test", "--password", "long enough"); c != 0 {
		t.Fatal(e)
	}
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		out        string // in stdout
		forwarding string // the policies after
		auto       string
	}{
		{name: "defaults", args: nil, out: "forwarding allow\nautomatic forwarding deny\n", forwarding: "allow", auto: "deny"},
		{name: "manual deny", args: []string{"deny"}, out: "forwarding deny for carol@c.test\n", forwarding: "deny", auto: "deny"},
		{name: "auto allow", args: []string{"--auto", "allow"}, out: "automatic forwarding allow for carol@c.test\n", forwarding: "deny", auto: "allow"},
		{name: "both", args: []string{"allow", "--auto", "deny"}, out: "forwarding allow for carol@c.test\nautomatic forwarding deny for carol@c.test\n",
			forwarding: "allow", auto: "deny"},
		{name: "flag first", args: []string{"--auto", "allow", "allow"}, forwarding: "allow", auto: "allow"},
		{name: "bad policy", args: []string{"maybe"}, code: 2, forwarding: "allow", auto: "allow"},
		{name: "bad auto", args: []string{"--auto", "yes"}, code: 2, forwarding: "allow", auto: "allow"},
		{name: "unknown user", args: []string{"--auto", "deny", "nobody@c.test"}, code: 1, forwarding: "allow", auto: "allow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"user", "forwarding", "--data", dir}
			if tc.name != "unknown user" {
				args = append(args, "carol@c.test")
			}
			c, out, e := run(append(args, tc.args...)...)
			if c != tc.code || !strings.Contains(out, tc.out) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, %q", c, out, e, tc.code, tc.out)
			}
			c, out, e = run("user", "forwarding", "--data", dir, "carol@c.test", "--json")
			var p ForwardingPolicy
			if c != 0 || json.Unmarshal([]byte(out), &p) != nil {
				t.Fatalf("--json: exit %d %q %s", c, out, e)
			}
			if p.Address != "carol@c.test" || p.Forwarding != tc.forwarding || p.Auto != tc.auto {
				t.Errorf("policy %+v, want forwarding %s, auto %s", p, tc.forwarding, tc.auto)
			}
		})
	}
}

// TestAutoforwardCommand: 'pullmail autoforward' shows, sets and clears
// the rule against a real domain, within the policy.
func TestAutoforwardCommand(t *testing.T) {
	ctx := context.Background()
	df, dir, as, _ := startDev(t, "c.test", "carol@c.test,erin@c.test")
	carol := as("carol@c.test")
	vars := map[string]string{"PULLMAIL_SERVER": df.Users["carol@c.test"].Server,
		"PULLMAIL_TOKEN": df.Users["carol@c.test"].Token, "PULLMAIL_CA": df.CA}
	cmd := func(args ...string) (int, string, string) {
		env, out, errb := testEnv(vars, false)
		return Main(ctx, env, append([]string{"autoforward"}, args...)), out.String(), errb.String()
	}
	if c, _, e := cmd("--to", "erin@c.test"); c == 0 || !strings.Contains(e, "forwarding_denied") {
		t.Fatalf("a rule against the default policy: exit %d, %s", c, e)
	}
	if _, err := carol.SetAutoForward(ctx, mailbox.AutoForwardRequest{To: []string{"erin@c.test"}}); errs.CodeOf(err) != "forwarding_denied" {
		t.Fatalf("the client: %v", err)
	}
	runAdmin(t, "user", "forwarding", "--data", dir+"/c.test", "carol@c.test", "--auto", "allow")
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{nil, 0, "automatic forwarding off (allowed)\n"},
		{[]string{"--to", "erin@c.test"}, 0, "automatic forwarding to erin@c.test (allowed)\n"},
		{nil, 0, "automatic forwarding to erin@c.test (allowed)\n"},
		{[]string{"--json"}, 0, `{"to":["erin@c.test"],"enabled":true,"allowed":true}`},
		{[]string{"--to", "carol@c.test"}, 1, ""},
		{[]string{"--to", "erin@c.test", "--off"}, 2, ""},
		{[]string{"extra"}, 2, ""},
		{[]string{"--off"}, 0, "automatic forwarding off (allowed)\n"},
	} {
		c, out, e := cmd(tc.args...)
		if tc.out == "" {
			out = ""
		}
		if c != tc.code || strings.Join(strings.Fields(out), "") != strings.Join(strings.Fields(tc.out), "") {
			t.Errorf("autoforward %v: exit %d, %q, %s; want exit %d, %q", tc.args, c, out, e, tc.code, tc.out)
		}
	}
}
