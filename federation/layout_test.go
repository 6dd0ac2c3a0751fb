package federation

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules keeps the layout the README's table describes: the wire
// protocol imports none of the servers that speak it, the sending and
// receiving sides do not import the authorization server (they reach it
// through the wire, in process or over HTTPS), and the MTA does not import
// the receiving side.
func TestImportRules(t *testing.T) {
	const mod = "github.com/pullmail/pullmail/"
	for _, tc := range []struct {
		pkg       string
		forbidden []string
	}{
		{"federation", []string{"authz", "inbound", "mta", "mailbox", "server"}},
		{"inbound", []string{"authz", "mta", "server"}},
		{"mta", []string{"authz", "inbound", "server"}},
		{"mailbox", []string{"authz", "inbound", "mta", "server"}},
		{"discovery", []string{"authz", "inbound", "mta", "mailbox", "server"}},
	} {
		t.Run(tc.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", mod+tc.pkg).Output()
			if err != nil {
				t.Fatalf("go list: %v", err)
			}
			deps := map[string]bool{}
			for _, d := range strings.Fields(string(out)) {
				deps[d] = true
			}
			for _, f := range tc.forbidden {
				if deps[mod+f] {
					t.Errorf("%s imports %s", tc.pkg, f)
				}
			}
		})
	}
}
