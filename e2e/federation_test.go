package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// devSandbox runs 'pullmail dev' and returns its dev.json.
func devSandbox(t *testing.T, dir string, args ...string) map[string]any {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"dev", "--data", dir, "--log-level", "info"}, args...)...)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("pullmail dev said:\n%s", stderr.String())
		}
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Press Ctrl-C") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatalf("dev did not start: %s", stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	if err != nil {
		t.Fatal(err)
	}
	var df map[string]any
	json.Unmarshal(b, &df)
	return df
}

func userEnv(df map[string]any, addr string) []string {
	u := df["users"].(map[string]any)[addr].(map[string]any)
	return []string{"PULLMAIL_SERVER=" + u["server"].(string), "PULLMAIL_TOKEN=" + u["token"].(string), "PULLMAIL_CA=" + df["ca"].(string)}
}

// TestCrossDomainDelivery: alice@a.test sends bob@b.test a message with an
// attachment; b.test receives the placeholder, pulls the resources from
// a.test, and bob downloads the attachment byte-identical — two servers that
// share nothing but the sandbox's DNS and CA.
func TestCrossDomainDelivery(t *testing.T) {
	dir := t.TempDir()
	df := devSandbox(t, dir, "--domains", "a.test,b.test", "--users", "alice@a.test,bob@b.test")
	attach := filepath.Join(t.TempDir(), "photo.bin")
	payload := make([]byte, 3<<20+5)
	rand.Read(payload)
	os.WriteFile(attach, payload, 0o644)
	msgid := strings.TrimSpace(must(t, userEnv(df, "alice@a.test"), "", "send", "--to", "Bob <bob@b.test>",
		"--subject", "Across domains", "--text", "Pulled, not pushed.", "--attach", attach))
	var inbox []listed
	deadline := time.Now().Add(60 * time.Second)
	for {
		json.Unmarshal([]byte(must(t, userEnv(df, "bob@b.test"), "", "list", "--json")), &inbox)
		if len(inbox) == 1 && inbox[0].Status == "complete" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's inbox after 60 s: %+v", inbox)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if inbox[0].MessageID != msgid || inbox[0].Subject != "Across domains" {
		t.Fatalf("bob's copy: %+v", inbox[0])
	}
	if out := must(t, userEnv(df, "bob@b.test"), "", "show", msgid); !strings.Contains(out, "Pulled, not pushed.") {
		t.Fatalf("show: %s", out)
	}
	outDir := t.TempDir()
	saved := strings.TrimSpace(must(t, userEnv(df, "bob@b.test"), "", "get", msgid, "--out", outDir))
	if got, err := os.ReadFile(saved); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("the attachment differs (%v)", err)
	}
	var sent []listed
	json.Unmarshal([]byte(must(t, userEnv(df, "alice@a.test"), "", "list", "--folder", "sent", "--json")), &sent)
	if len(sent) != 1 || sent[0].MessageID != msgid {
		t.Fatalf("alice's sent: %+v", sent)
	}
}
