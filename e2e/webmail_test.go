package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestWebmailBrowser runs the webmail's browser test (webmail/e2e) against
// a 'pullmail dev' sandbox: Debian's headless Chromium driven by
// playwright-core signs alice@a.test in through the login page, sends
// carol@b.test a message with an attachment, and checks that carol sees it
// arrive, downloads it byte-identical and reads it offline. It goes on
// through issue 19's journeys: search, trash and undo, words kept over a
// reload, a bounce, HTML mail with cid: and blocked images, keyboard
// shortcuts, autocomplete, a signature, rich text with a pasted image,
// offline, dark mode, a 250-message inbox and phone width, with axe-core
// (0 violations) on every view. Screenshots go to $PULLMAIL_E2E_OUT/webmail,
// or to the test's temporary directory.
//
// It needs webmail/node_modules (npm ci in webmail/) and /usr/bin/chromium;
// without them it skips, unless PULLMAIL_REQUIRE_BROWSER=1 (CI), where it
// fails.
func TestWebmailBrowser(t *testing.T) {
	webmail, err := filepath.Abs("../webmail")
	if err != nil {
		t.Fatal(err)
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	var missing []string
	if _, err := os.Stat(filepath.Join(webmail, "node_modules", "playwright-core")); err != nil {
		missing = append(missing, "webmail/node_modules (run npm ci in webmail/)")
	}
	if _, err := os.Stat(chromium); err != nil {
		missing = append(missing, chromium+" (apt-get install chromium)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node")
	}
	if len(missing) > 0 {
		if os.Getenv("PULLMAIL_REQUIRE_BROWSER") == "1" {
			t.Fatalf("PULLMAIL_REQUIRE_BROWSER=1 but missing: %v", missing)
		}
		t.Skipf("browser test skipped, missing: %v (set PULLMAIL_REQUIRE_BROWSER=1 to make this a failure)", missing)
	}

	out := t.TempDir()
	if o := os.Getenv("PULLMAIL_E2E_OUT"); o != "" {
		out = filepath.Join(o, "webmail")
	}
	dir := t.TempDir()
	devSandbox(t, dir, "--domains", "a.test,b.test", "--users", "alice@a.test,carol@b.test")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("e2e", "webmail.e2e.mjs"), dir, out)
	cmd.Dir = webmail
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	b, err := cmd.CombinedOutput()
	t.Logf("webmail e2e output:\n%s", b)
	if err != nil {
		t.Fatalf("webmail e2e: %v", err)
	}
	t.Logf("screenshots in %s", out)
}
