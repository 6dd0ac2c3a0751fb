package e2e

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/testenv"
)

// startDomains starts the users' domains as kind, every one with its
// users and their tokens, found by the others as real domains are
// (package sandbox: SRV records in a DNS server of the test's own and an
// HTTPS redirect service in the test process, one CA); nothing leaves
// 127.0.0.0/8. With sandbox.Process each domain is its own 'pullmail serve'
// process of the binary under test.
func startDomains(t testing.TB, kind sandbox.Kind, users ...string) *sandbox.Sandbox {
	t.Helper()
	return testenv.Sandbox(t, sandbox.Config{Kind: kind, Binary: bin, Users: users})
}

// waitComplete waits until user's inbox holds msgid, complete, and
// returns the inbox.
func waitComplete(t testing.TB, sb *sandbox.Sandbox, user, msgid string, within time.Duration) []listed {
	t.Helper()
	return waitCompleteEnv(t, sb.Env(user), msgid, within)
}

// checkAttachment downloads msgid's attachment as user and compares it.
func checkAttachment(t testing.TB, sb *sandbox.Sandbox, user, msgid string, want []byte) {
	t.Helper()
	checkAttachmentEnv(t, sb.Env(user), msgid, want)
}

func randomFile(t testing.TB, name string, size int) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b
}

var fetchServedRE = regexp.MustCompile(`path=/federation/v1/resources/(\S+) status=200`)

// TestThreeDomains: one message from a.test to two users at b.test (To, Cc)
// and one at c.test (Bcc), three domains in process and as three processes. Every copy completes with the
// attachment intact, the Bcc stays hidden, and a.test serves each resource
// once per recipient domain: b.test pulls once for its two recipients.
func TestThreeDomains(t *testing.T) {
	for _, kind := range sandbox.Kinds {
		t.Run(kind.String(), func(t *testing.T) { threeDomains(t, kind) })
	}
}

func threeDomains(t *testing.T, kind sandbox.Kind) {
	sb := startDomains(t, kind, "alice@a.test", "bob@b.test", "carol@b.test", "dave@c.test")
	attach, payload := randomFile(t, "plans.bin", 5<<20)
	msgid := strings.TrimSpace(must(t, sb.Env("alice@a.test"), "", "send", "--to", "Bob <bob@b.test>",
		"--cc", "carol@b.test", "--bcc", "dave@c.test", "--subject", "Three domains", "--text", "One push each, one pull each.",
		"--attach", attach))
	for _, u := range []string{"bob@b.test", "carol@b.test", "dave@c.test"} {
		l := waitComplete(t, sb, u, msgid, 60*time.Second)
		if len(l) != 1 || l[0].Subject != "Three domains" || l[0].From != "alice@a.test" {
			t.Fatalf("%s's inbox: %+v", u, l)
		}
		checkAttachment(t, sb, u, msgid, payload)
	}

	for _, u := range []string{"bob@b.test", "carol@b.test"} {
		out := must(t, sb.Env(u), "", "show", msgid)
		if strings.Contains(out, "dave") || !strings.Contains(out, "One push each, one pull each.") {
			t.Fatalf("%s's copy:\n%s", u, out)
		}
	}
	if out := must(t, sb.Env("dave@c.test"), "", "show", msgid); !strings.Contains(out, "Bcc: dave@c.test\n") {
		t.Fatalf("dave's copy:\n%s", out)
	}

	// a.test's log: each resource served once to b.test and once to c.test.
	served := map[string]int{}
	for _, m := range fetchServedRE.FindAllStringSubmatch(sb.Domain("a.test").Log(), -1) {
		served[m[1]]++
	}
	if len(served) < 2 { // the text and the attachment
		t.Fatalf("a.test served %v", served)
	}
	for cid, n := range served {
		if n != 2 {
			t.Fatalf("a.test served %s %d times, want 2 (once per recipient domain): %v", cid, n, served)
		}
	}
	t.Logf("a.test served %d resources, each twice (b.test, c.test)", len(served))
}

// waitPulling waits until p holds a partial download of at least min bytes
// in its resources' tmp directory.
func waitPulling(t testing.TB, p *sandbox.Domain, min int64, within time.Duration) int64 {
	t.Helper()
	tmp := filepath.Join(p.Dir, "resources", "tmp")
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if n := largestTmp(tmp); n >= min {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s never held %d bytes of a pull in %s", p.Name, min, tmp)
	return 0
}

// TestKillMidTransfer: kill -9 the receiving domain while it pulls a large
// attachment, restart it on the same data and port, and the copy
// completes byte-identical, once; then the same with the sending domain.
func TestKillMidTransfer(t *testing.T) {
	const size = 200 << 20
	sb := startDomains(t, sandbox.Process, "alice@a.test", "bob@b.test")
	a, b := sb.Domain("a.test"), sb.Domain("b.test")

	for _, tc := range []struct {
		victim        *sandbox.Domain
		file, subject string
		text          string
	}{
		{b, "big1.bin", "Kill the receiver", "Still here?"},
		{a, "big2.bin", "Kill the sender", "Still there?"},
	} {
		attach, payload := randomFile(t, tc.file, size)
		msgid := strings.TrimSpace(must(t, sb.Env("alice@a.test"), "", "send", "--to", "bob@b.test",
			"--subject", tc.subject, "--text", tc.text, "--attach", attach))
		n := waitPulling(t, b, 8<<20, 60*time.Second)
		tc.victim.Kill()
		t.Logf("killed %s with %d bytes pulled", tc.victim.Name, n)
		start := time.Now()
		restart(t, tc.victim)
		l := waitComplete(t, sb, "bob@b.test", msgid, 3*time.Minute)
		t.Logf("complete %v after the restart", time.Since(start).Round(time.Second))
		copies := 0
		for _, m := range l {
			if m.MessageID == msgid {
				copies++
			}
		}
		if copies != 1 {
			t.Fatalf("bob holds %d copies: %+v", copies, l)
		}
		checkAttachment(t, sb, "bob@b.test", msgid, payload)
	}
}
