package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta/postgres/pgtest"
	"github.com/pullmail/pullmail/resource/s3store/s3test"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/testenv"
)

// TestTwoNodesOnPostgresAndS3 (issue 14): a.test runs two 'pullmail serve'
// nodes on one PostgreSQL database and one S3 bucket (versitygw), behind
// one public port that spreads connections over them; b.test runs one on
// SQLite and files. A 200 MiB attachment goes each way. Then b.test sends
// another, and the a.test node that pulls it is killed with SIGKILL in the
// middle: the other node takes the pull over once the dead node's lease
// ends, and alice holds exactly one copy, byte-identical, while the dead
// node is still down.
func TestTwoNodesOnPostgresAndS3(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 600 MiB between three processes")
	}
	const size = 200 << 20
	pg := pgtest.URL(t)
	s3 := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.Process, Binary: bin, LogLevel: "info",
		Users:      []string{"alice@a.test", "bob@b.test"},
		Backends:   map[string]sandbox.Backends{"a.test": {Meta: pg, Resources: s3.URL()}},
		Nodes:      map[string]int{"a.test": 2},
		ServeFlags: []string{"--job-lease", "3s"}})
	a := sb.Domain("a.test")
	n2 := a.Nodes()[0]
	// alice's CLI talks to a.test's public port: whichever node is up.
	alice := []string{"PULLMAIL_SERVER=" + a.URL, "PULLMAIL_TOKEN=" + token(sb, "alice@a.test"), "PULLMAIL_CA=" + sb.CA}
	bob := sb.Env("bob@b.test")

	// Both ways.
	attach, payload := randomFile(t, "a-to-b.bin", size)
	msgid := strings.TrimSpace(must(t, alice, "", "send", "--to", "bob@b.test", "--subject", "From two nodes",
		"--text", "On PostgreSQL and S3.", "--attach", attach))
	waitComplete(t, sb, "bob@b.test", msgid, 3*time.Minute)
	checkAttachment(t, sb, "bob@b.test", msgid, payload)
	attach, payload = randomFile(t, "b-to-a.bin", size)
	msgid = strings.TrimSpace(must(t, bob, "", "send", "--to", "alice@a.test", "--subject", "To two nodes",
		"--text", "Into S3.", "--attach", attach))
	waitCompleteEnv(t, alice, msgid, 3*time.Minute)
	checkAttachmentEnv(t, alice, msgid, payload)
	// Both nodes served: a.test's log (n1) and n2's show requests.
	if !strings.Contains(a.Log(), "status=") || !strings.Contains(n2.Log(), "status=") {
		t.Errorf("a node of a.test served nothing:\nn1:\n%s\nn2:\n%s", lastLines(a.Log(), 5), lastLines(n2.Log(), 5))
	}

	// Kill the puller.
	attach, payload = randomFile(t, "killed.bin", size)
	before := map[string]int64{"n1": rchar(t, a.Pid()), "n2": rchar(t, n2.Pid())}
	msgid = strings.TrimSpace(must(t, bob, "", "send", "--to", "alice@a.test", "--subject", "Kill the puller",
		"--text", "Still here?", "--attach", attach))
	victim := ""
	deadline := time.Now().Add(time.Minute)
	for victim == "" && time.Now().Before(deadline) {
		for name, pid := range map[string]int{"n1": a.Pid(), "n2": n2.Pid()} {
			if rchar(t, pid)-before[name] > 16<<20 {
				victim = name
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	switch victim {
	case "n1":
		a.Kill()
	case "n2":
		n2.Kill()
	default:
		t.Fatal("no node of a.test read 16 MiB of the pull within a minute")
	}
	t.Logf("killed %s mid-pull", victim)
	start := time.Now()
	l := waitCompleteEnv(t, alice, msgid, 3*time.Minute)
	t.Logf("the other node finished the pull %v after the kill", time.Since(start).Round(100*time.Millisecond))
	copies := 0
	for _, m := range l {
		if m.MessageID == msgid {
			copies++
		}
	}
	if copies != 1 {
		t.Fatalf("alice holds %d copies: %+v", copies, l)
	}
	checkAttachmentEnv(t, alice, msgid, payload)

	// The dead node comes back and does not pull it again.
	if victim == "n1" {
		restart(t, a)
	} else if err := n2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if l := inboxEnv(t, alice); countID(l, msgid) != 1 {
		t.Fatalf("after the restart alice holds %d copies", countID(l, msgid))
	}
}

// rchar is what the process has read, files and sockets alike
// (/proc/PID/io): a pulling node's grows by the attachment's size.
func rchar(t testing.TB, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0 // not running
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "rchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// inboxEnv lists the inbox of the CLI environment's user.
func inboxEnv(t testing.TB, env []string) []listed {
	t.Helper()
	var l []listed
	if err := json.Unmarshal([]byte(must(t, env, "", "list", "--json")), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func countID(l []listed, msgid string) int {
	n := 0
	for _, m := range l {
		if m.MessageID == msgid {
			n++
		}
	}
	return n
}

// waitCompleteEnv is waitComplete for a CLI environment.
func waitCompleteEnv(t testing.TB, env []string, msgid string, within time.Duration) []listed {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		l := inboxEnv(t, env)
		for _, m := range l {
			if m.MessageID == msgid && m.Status == "complete" {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the inbox after %v: %+v", within, l)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkAttachmentEnv is checkAttachment for a CLI environment.
func checkAttachmentEnv(t testing.TB, env []string, msgid string, want []byte) {
	t.Helper()
	saved := strings.TrimSpace(must(t, env, "", "get", msgid, "--out", t.TempDir()))
	got, err := os.ReadFile(saved)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the attachment differs from what was sent (%d bytes read, %v)", len(got), err)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
