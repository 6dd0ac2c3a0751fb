package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/testenv"
)

// TestSearchCommand runs pullmail search as a user would: table and
// --json, a field, a quoted phrase, a bad query (exit 1).
func TestSearchCommand(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	bob := d.AddUser(t, "bob@a.test")
	vars := map[string]string{"PULLMAIL_SERVER": d.URL, "PULLMAIL_TOKEN": alice.Token, "PULLMAIL_CA": d.CA}
	run := func(want int, args ...string) string {
		t.Helper()
		env, out, errb := testEnv(vars, false)
		if code := Main(context.Background(), env, args); code != want {
			t.Fatalf("%s: exit %d, want %d: %s%s", args, code, want, out.String(), errb.String())
		}
		return out.String() + errb.String()
	}
	tea := strings.TrimSpace(run(0, "send", "--to", "bob@a.test", "--subject", "Tea party", "--text", "Bring the March hare."))
	run(0, "send", "--to", "bob@a.test", "--subject", "Croquet", "--text", "Flamingos wanted.")
	vars["PULLMAIL_TOKEN"] = bob.Token
	var found []struct {
		MessageID string `json:"message_id"`
		Folder    string `json:"folder"`
	}
	if err := json.Unmarshal([]byte(run(0, "search", `"march hare"`, "--json")), &found); err != nil || len(found) != 1 || found[0].MessageID != tea || found[0].Folder != "inbox" {
		t.Fatalf("search --json: %+v %v", found, err)
	}
	if out := run(0, "search", "subject:tea", "from:alice@a.test"); !strings.Contains(out, tea) || strings.Contains(out, "Croquet") {
		t.Fatalf("search subject:tea: %q", out)
	}
	if out := run(0, "search", "zebra"); !strings.Contains(out, "no message matches") {
		t.Fatalf("search zebra: %q", out)
	}
	if out := run(1, "search", "has:pdf"); !strings.Contains(out, "has:pdf") {
		t.Fatalf("search has:pdf: %q", out)
	}
	run(2, "search")
}
