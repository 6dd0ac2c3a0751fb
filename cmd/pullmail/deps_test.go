package main

import (
	"os/exec"
	"path"
	"strings"
	"testing"
)

// TestNoTestCodeInBinary: the product binary links no test-only code: not
// package testing, net/http/httptest (and its test certificate), testenv or
// a conformance suite. discovery/dnstest is the exception: it is the
// loopback DNS server that 'pullmail dev' and 'pullmail bench' run (through
// package sandbox), product code despite its name.
func TestNoTestCodeInBinary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const module = "github.com/pullmail/pullmail/"
	allowed := map[string]bool{module + "discovery/dnstest": true}
	var linked int
	for _, pkg := range strings.Fields(string(out)) {
		linked++
		testOnly := pkg == "testing" || strings.HasPrefix(pkg, "testing/") ||
			pkg == "net/http/httptest" || pkg == "net/http/internal/testcert" ||
			(strings.HasPrefix(pkg, module) && (strings.Contains(path.Base(pkg), "test") || path.Base(pkg) == "e2e"))
		if testOnly && !allowed[pkg] {
			t.Errorf("cmd/pullmail links %s, which is test-only", pkg)
		}
	}
	if linked < 100 {
		t.Fatalf("go list named %d packages: %q", linked, out)
	}
}
