package mailbox_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestErrorCodesDocumented holds docs/PROTOCOL.md to the code: every error
// code that the mailbox API's packages can answer with appears there in
// backquotes, so a new code cannot ship undocumented.
func TestErrorCodesDocumented(t *testing.T) {
	spec, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	// errs.E(errs.Kind, "code", ...) and errs.Wrap(err, errs.Kind, "code", ...)
	re := regexp.MustCompile(`errs\.(?:E|Wrap)\((?:[a-zA-Z]+, )?errs\.[A-Za-z]+, "([a-z_0-9]+)"`)
	found := 0
	for _, dir := range []string{"../mailbox", "../auth", "../server", "../errs"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range re.FindAllStringSubmatch(string(src), -1) {
				found++
				if !strings.Contains(string(spec), "`"+m[1]+"`") {
					t.Errorf("%s: code %q is not documented in docs/PROTOCOL.md", f, m[1])
				}
			}
		}
	}
	if found < 20 {
		t.Fatalf("found only %d error codes in the source: the pattern no longer matches the code", found)
	}
}
