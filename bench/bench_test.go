package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQuickRun runs the suite end to end with tiny sizes: Pullmail only,
// and the SMTP peers too when PULLMAIL_BENCH_PEERS=1 (building them needs
// the Go module proxy). It checks that the figures are sane, not fast.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "pullmail")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/pullmail").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var peers []string
	if os.Getenv("PULLMAIL_BENCH_PEERS") == "1" {
		peers = PeerNames
	}
	sz := Sizes{Large: []int64{256 << 10, 1 << 20}, Repeat: 1 << 20, Fanout: 512 << 10,
		FanoutDomains: 2, FanoutPerDomain: 2, Small: 30, Senders: []int{1, 4}, SMTPIn: 768 << 10, SMTPOut: 20, Import: 4 << 20}
	cache := os.Getenv("PULLMAIL_BENCH_CACHE")
	if cache == "" {
		cache = filepath.Join(dir, "cache")
	}
	var progress strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The baseline is the same binary: its figures must be there, and the
	// table of them.
	r, err := Run(ctx, Options{Binary: bin, Quick: true, Peers: peers, CacheDir: cache, TempDir: dir,
		CPUProfileDir: filepath.Join(dir, "prof"), Progress: &progress, Sizes: &sz, Baseline: bin})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	t.Logf("progress:\n%s", progress.String())
	systems := 2 + len(peers) - len(r.Skipped) // pullmail, pullmail-baseline, the peers
	if len(r.Skipped) > 0 {
		t.Errorf("peers skipped: %v", r.Skipped)
	}

	if len(r.Floors) != 4 || len(r.SmallFloors) != 2 {
		t.Fatalf("floors: %+v %+v", r.Floors, r.SmallFloors)
	}
	for _, f := range r.Floors {
		if f.SHA256Seconds <= 0 || f.HTTPSCopySeconds <= 0 || f.FsyncWriteSeconds <= 0 {
			t.Errorf("floor %+v", f)
		}
	}
	// check checks a case; again says the attachment was sent before, so
	// Pullmail's recipient domain holds it already.
	check := func(c Case, again bool) {
		t.Helper()
		if len(c.Results) != systems {
			t.Fatalf("workload %d: %d results, want %d", c.Workload, len(c.Results), systems)
		}
		for _, res := range c.Results {
			if res.Refused != "" || res.Delivered != c.Recipients {
				t.Errorf("workload %d %s: %d of %d delivered, refused %q", c.Workload, res.System, res.Delivered, c.Recipients, res.Refused)
			}
			if res.Seconds <= 0 || len(res.PeakRSS) == 0 {
				t.Errorf("workload %d %s: %+v", c.Workload, res.System, res)
			}
			payload := c.Size * int64(c.Domains)
			pullmail := strings.HasPrefix(res.System, "pullmail")
			if !again || !pullmail {
				// Every copy crosses the wire and lands on disk.
				if res.WireBytes < payload || res.DiskBytes < payload {
					t.Errorf("workload %d %s: wire %d, disk %d, payload %d", c.Workload, res.System, res.WireBytes, res.DiskBytes, payload)
				}
			}
			if pullmail && !again && c.Workload != 6 && res.SenderDiskBytes < c.Size {
				t.Errorf("workload %d: the sender added %d bytes, want the attachment's %d", c.Workload, res.SenderDiskBytes, c.Size)
			}
		}
	}
	if len(r.Large) != 2 {
		t.Fatalf("workload 1: %d cases", len(r.Large))
	}
	for _, c := range r.Large {
		check(c, false)
	}
	check(*r.Repeat, true)
	check(*r.Fanout, false)
	if len(r.SMTPIn) != 2 {
		t.Fatalf("workload 6: %d cases", len(r.SMTPIn))
	}
	check(r.SMTPIn[0], false)
	check(r.SMTPIn[1], true)
	for i, c := range r.SMTPIn {
		for _, res := range c.Results {
			if res.System != "pullmail" {
				continue
			}
			// In: the decoded attachment once, not its base64 (1.37×);
			// again: nothing of it.
			if i == 0 && res.DiskBytes > c.Size*5/4 || i == 1 && res.DiskBytes >= c.Size/4 {
				t.Errorf("workload 6 case %d: SMTP in of %d bytes added %d to Pullmail's disk", i, c.Size, res.DiskBytes)
			}
		}
	}
	// Dedup: Pullmail's recipient domain already holds the attachment.
	for _, res := range r.Repeat.Results {
		if res.System == "pullmail" && (res.WireBytes >= r.Repeat.Size/4 || res.DiskBytes >= r.Repeat.Size/4) {
			t.Errorf("the same attachment again cost Pullmail %d wire and %d disk bytes", res.WireBytes, res.DiskBytes)
		}
	}
	if len(r.Small) != 2 {
		t.Fatalf("workload 4: %d cases", len(r.Small))
	}
	for _, c := range r.Small {
		for _, res := range c.Results {
			if res.Delivered != sz.Small || res.Refused != "" || res.PerSecond <= 0 || res.P50 <= 0 || res.P99 < res.P50 || res.WireBytes <= 0 {
				t.Errorf("workload 4, %d senders, %s: %+v", c.Senders, res.System, res)
			}
		}
	}
	if im := r.Import; im == nil || im.Messages == 0 || im.Failed != 0 || im.Bytes < 4<<20 || im.PeakRSS == 0 || im.DiskBytes == 0 {
		t.Errorf("workload 9: %+v", r.Import)
	}
	// Workload 8 runs with maddy only (its MX).
	if len(peers) > 0 {
		if len(r.SMTPOut) != 2 {
			t.Fatalf("workload 8: %d cases", len(r.SMTPOut))
		}
		for _, c := range r.SMTPOut {
			if len(c.Results) != 2 {
				t.Errorf("workload 8, %d senders: %d results (pullmail and maddy-relay wanted)", c.Senders, len(c.Results))
			}
			for _, res := range c.Results {
				if res.Delivered != sz.SMTPOut || res.Refused != "" || res.PerSecond <= 0 || res.P99 < res.P50 {
					t.Errorf("workload 8, %d senders, %s: %+v", c.Senders, res.System, res)
				}
			}
		}
	}
	if len(r.Profiles) != 6 { // a.test, d1.test, d2.test, of this binary and of the baseline
		t.Errorf("CPU profiles: %v", r.Profiles)
	}

	var md strings.Builder
	r.Markdown(&md, "pullmail bench --quick")
	for _, want := range []string{"Workload 1", "Workload 2", "Workload 3", "Workload 4", "Workload 5", "Workload 6:", "Workload 6b", "Workload 9:", "| 1.0 MiB | pullmail |", "Against the baseline binary", "| 1: 1.0 MiB |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	b, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || len(back.Large) != 2 {
		t.Fatalf("JSON round trip: %v", err)
	}
}

func TestPercentiles(t *testing.T) {
	for _, tc := range []struct {
		xs       []float64
		p50, p99 float64
	}{
		{[]float64{3, 1, 2}, 2, 3},
		{[]float64{5}, 5, 5},
		{func() []float64 {
			var xs []float64
			for i := 100; i >= 1; i-- {
				xs = append(xs, float64(i))
			}
			return xs
		}(), 51, 100},
	} {
		p50, p99 := percentiles(tc.xs)
		if p50 != tc.p50 || p99 != tc.p99 {
			t.Errorf("percentiles(%v) = %v, %v; want %v, %v", tc.xs, p50, p99, tc.p50, tc.p99)
		}
	}
}

// TestMIME checks the attachment's encoding: CRLF lines of at most 78
// characters, none starting with a dot, ending with the closing boundary.
func TestMIME(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int64{0, 1, 57, 58, 57 * 1024, 57*1024 + 1, 200000} {
		p := filepath.Join(dir, "f")
		if err := MakeFile(p, size, 9); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := mimeWithAttachment(sender, []string{"a@d1.test", "b@d1.test"}, "s", "id@a.test", p)(&b); err != nil {
			t.Fatal(err)
		}
		s := b.String()
		if !strings.HasSuffix(s, "--pullmail-bench-boundary--\r\n") {
			t.Fatalf("size %d: no closing boundary", size)
		}
		for _, l := range strings.SplitAfter(s, "\n") {
			if l == "" {
				continue
			}
			if !strings.HasSuffix(l, "\r\n") || len(l) > 80 || strings.HasPrefix(l, ".") {
				t.Fatalf("size %d: bad line %q", size, l)
			}
		}
		min := size * 4 / 3
		if int64(len(s)) < min {
			t.Fatalf("size %d: %d bytes of message", size, len(s))
		}
	}
}

// FuzzSMTPReply feeds the reply reader arbitrary server output: it must
// return a reply or an error, never hang or panic.
func FuzzSMTPReply(f *testing.F) {
	for _, s := range []string{"220 ok\r\n", "250-a\r\n250-STARTTLS\r\n250 SIZE\r\n", "451 4.4.0 no\r\n", "25\r\n", "250-x\n", "abc def\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, b := net.Pipe()
		defer a.Close()
		go func() {
			b.Write([]byte(s))
			b.Close()
		}()
		c := &smtpConn{c: a, r: bufio.NewReader(a)}
		code, lines, err := c.reply(250)
		if err == nil && (code/100 != 2 || len(lines) == 0) {
			t.Fatalf("reply %q: code %d lines %q without an error", s, code, lines)
		}
	})
}
