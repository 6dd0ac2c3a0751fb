package interop

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
)

// TestKillDuringData: 'pullmail serve' is killed (SIGKILL) while a client
// is halfway through a 100 MiB DATA. The client's transaction fails; after
// the restart nothing of it is visible in the mailbox; the sender's retry
// of the same message delivers it exactly once, complete, its attachment
// the file's own resource.
func TestKillDuringData(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB: not with -short")
	}
	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.Process, Binary: pullmailBinary(t), Domains: []string{"a.test"},
		Users: []string{"alice@a.test"}, SMTP: true})
	d := sb.Domain("a.test")
	pool, err := tlsca.LoadPool(sb.CA)
	if err != nil {
		t.Fatal(err)
	}
	// 75 MiB of attachment, 100 MiB in base64.
	payload := make([]byte, 75<<20)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(payload)
	msg := multipartMessage("big@example.org", "alice@a.test", "Big", "<kill-9@example.org>", payload)
	t.Logf("message: %.1f MiB", float64(len(msg))/(1<<20))

	// send writes msg in 1 MiB writes; kill, when set, runs once half of
	// it has gone.
	send := func(kill func()) error {
		c, err := smtp.DialStartTLS(d.SMTP, &tls.Config{RootCAs: pool, ServerName: "a.test"})
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Mail("big@example.org", nil); err != nil {
			return err
		}
		if err := c.Rcpt("alice@a.test", nil); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		for off := 0; off < len(msg); off += 1 << 20 {
			if kill != nil && off >= len(msg)/2 {
				kill()
				kill = nil
			}
			if _, err := w.Write(msg[off:min(len(msg), off+1<<20)]); err != nil {
				return fmt.Errorf("writing at %d: %w", off, err)
			}
		}
		return w.Close()
	}
	start := time.Now()
	err = send(d.Kill)
	if err == nil {
		t.Fatal("the transaction succeeded although the server was killed during DATA")
	}
	t.Logf("killed during DATA after %v: the client saw %v", time.Since(start), err)
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	alice, err := sb.Client("alice@a.test")
	if err != nil {
		t.Fatal(err)
	}
	count := func() []mailbox.Message {
		t.Helper()
		var all []mailbox.Message
		for _, f := range []string{"inbox", "junk", "requests"} {
			l, err := alice.List(context.Background(), mailbox.ListOptions{Folder: f})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, l.Messages...)
		}
		return all
	}
	if l := count(); len(l) != 0 {
		t.Fatalf("after the kill, before any retry, the mailbox shows %d messages: %+v", len(l), l)
	}
	start = time.Now()
	if err := send(nil); err != nil {
		t.Fatalf("the retry: %v\n%s", err, d.Log())
	}
	t.Logf("the retry delivered %.0f MiB in %v", float64(len(msg))/(1<<20), time.Since(start))
	l := count()
	if len(l) != 1 || l[0].Status != "complete" || l[0].MessageID != "<kill-9@example.org>" || len(l[0].Attachments) != 1 ||
		l[0].Attachments[0].ContentID != resource.IDOf(payload) {
		t.Fatalf("after the retry: %+v", l)
	}
	var ids []string
	for _, m := range l {
		ids = append(ids, m.ID)
	}
	t.Logf("one copy: %s", strings.Join(ids, " "))
}
