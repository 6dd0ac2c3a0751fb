package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/testenv"
)

// TestDeliveryState: the sender's show --json and list --json give each
// recipient's delivery state: a local one delivered with the send, a
// Pullmail domain's delivered once a.test's MTA has pushed it (queued
// before). The SMTP recipients' are in TestSendToSMTPDomain.
func TestDeliveryState(t *testing.T) {
	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.InProcess, Domains: []string{"a.test", "b.test"},
		Users: []string{"alice@a.test", "bob@a.test", "carol@b.test"}})
	a := sb.Domain("a.test")
	alice, _ := sb.User("alice@a.test")
	vars := map[string]string{"PULLMAIL_SERVER": a.URL, "PULLMAIL_TOKEN": alice.Token, "PULLMAIL_CA": sb.CA}
	env, out, errb := testEnv(vars, false)
	if code := Main(context.Background(), env, []string{"send", "--to", "Bob <bob@a.test>", "--cc", "carol@b.test",
		"--subject", "state", "--text", "hello"}); code != 0 {
		t.Fatalf("send: exit %d: %s", code, errb.String())
	}
	msgid := strings.TrimSpace(out.String())
	var ds []mailbox.Delivery
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		env, out, errb := testEnv(vars, false)
		if code := Main(context.Background(), env, []string{"show", "--json", msgid}); code != 0 {
			t.Fatalf("show: exit %d: %s", code, errb.String())
		}
		var m mailbox.Message
		if err := json.Unmarshal(out.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		ds = m.Deliveries
		if len(ds) != 2 {
			t.Fatalf("deliveries %+v", ds)
		}
		if ds[0].Recipient != "bob@a.test" || ds[0].Via != "local" || ds[0].State != "delivered" {
			t.Fatalf("bob: %+v", ds[0])
		}
		if ds[1].State == "delivered" {
			break
		}
		if ds[1].State != "queued" && ds[1].State != "deferred" || time.Now().After(deadline) {
			t.Fatalf("carol: %+v\n%s", ds[1], a.Log())
		}
	}
	if c := ds[1]; c.Recipient != "carol@b.test" || c.Domain != "b.test" || c.Via != "pullmail" || c.Code != 0 || c.MX != "" {
		t.Errorf("carol: %+v", c)
	}
	env, out, errb = testEnv(vars, false)
	if code := Main(context.Background(), env, []string{"list", "--folder", "sent", "--json"}); code != 0 {
		t.Fatalf("list: exit %d: %s", code, errb.String())
	}
	var sent []mailbox.Message
	if err := json.Unmarshal(out.Bytes(), &sent); err != nil || len(sent) != 1 || len(sent[0].Deliveries) != 2 ||
		sent[0].Deliveries[1].State != "delivered" {
		t.Fatalf("list --json: %v %s", err, out.String())
	}
	env, out, errb = testEnv(vars, false)
	if code := Main(context.Background(), env, []string{"search", "subject:state", "--json"}); code != 0 ||
		!strings.Contains(out.String(), `"via": "pullmail"`) {
		t.Fatalf("search --json: exit %d %s %s", code, out.String(), errb.String())
	}
	env, out, errb = testEnv(vars, false)
	if code := Main(context.Background(), env, []string{"show", msgid}); code != 0 ||
		!strings.Contains(out.String(), "Delivery: bob@a.test delivered via local\n") ||
		!strings.Contains(out.String(), "Delivery: carol@b.test delivered via pullmail\n") {
		t.Fatalf("show: exit %d %s %s", code, out.String(), errb.String())
	}
	// Received copies carry no delivery state.
	bob, _ := sb.User("bob@a.test")
	env, out, _ = testEnv(map[string]string{"PULLMAIL_SERVER": a.URL, "PULLMAIL_TOKEN": bob.Token, "PULLMAIL_CA": sb.CA}, false)
	if code := Main(context.Background(), env, []string{"list", "--json"}); code != 0 || strings.Contains(out.String(), `"deliveries"`) {
		t.Fatalf("bob's inbox: exit %d %s", code, out.String())
	}
}
