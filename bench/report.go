package bench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
)

// mib renders a byte count: "512 KiB", "50 MiB", "1.00 GiB".
func mib(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20 || n <= -1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
}

func secs(s float64) string {
	switch {
	case math.IsNaN(s):
		return "—"
	case s < 0.01:
		return fmt.Sprintf("%.2f ms", s*1000)
	case s < 10:
		return fmt.Sprintf("%.3f s", s)
	}
	return fmt.Sprintf("%.1f s", s)
}

// ratio renders a/b as "×1.23", or "—" when it means nothing.
func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) || math.IsInf(a/b, 0) {
		return "—"
	}
	return fmt.Sprintf("×%.2f", a/b)
}

func peakOf(m map[string]int64) int64 {
	var p int64
	for _, v := range m {
		p = max(p, v)
	}
	return p
}

// rssText lists a result's peak RSS by server, largest first.
func rssText(m map[string]int64) string {
	type kv struct {
		k string
		v int64
	}
	var l []kv
	for k, v := range m {
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
	var parts []string
	for i, e := range l {
		if i == 2 && len(l) > 3 {
			parts = append(parts, fmt.Sprintf("%d more", len(l)-2))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.1f MiB", e.k, float64(e.v)/(1<<20)))
	}
	return strings.Join(parts, ", ")
}

func (r *Report) floor(size int64) Floor {
	for _, f := range r.Floors {
		if f.Size == size {
			return f
		}
	}
	return Floor{}
}

func (r *Report) smallFloor(writers int) SmallFloor {
	for _, f := range r.SmallFloors {
		if f.Writers == writers {
			return f
		}
	}
	return SmallFloor{P50: math.NaN(), P99: math.NaN()}
}

// peers returns the SMTP peers that ran.
func (r *Report) peers() []string {
	var out []string
	for _, n := range PeerNames {
		if _, ok := r.Settings[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// Markdown writes the report as the "Benchmark suite (pullmail bench)"
// section of docs/BENCHMARKS.md: machine, versions, date, one table per
// workload, and the peers' settings.
func (r *Report) Markdown(w io.Writer, command string) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	mode := "full"
	if r.Quick {
		mode = "quick (small sizes: proves the tool works, not figures to quote)"
	}
	p("    pullmail bench                 # the full run: by hand, results committed here (--out docs/BENCHMARKS.md)")
	p("    pullmail bench --quick         # small sizes, well under a minute once the peers are built")
	p("    pullmail bench --quick --peers none --json")
	p("")
	p("One command runs every workload of issue 7 on loopback, in one run: Pullmail domains, each its own `pullmail serve`")
	p("process found through SRV records in a DNS server of the run's own, and two real SMTP servers written in Go, maddy")
	p("and mox, built from the Go module proxy on first use (cached in `--cache`, never vendored) and configured as the")
	p("recipient domains' MX, with the benchmark as the sending domain's MTA. Wire bytes are counted by a TCP proxy in")
	p("front of every server's port (bytes between domains only: a Pullmail user's own upload is not counted); peak RSS is")
	p("each server's `VmHWM`, reset before each workload (`/proc/PID/clear_refs`); disk is the space allocated to the files")
	p("of each server's data directory (`st_blocks` × 512, SQLite and its WAL included, hard links once), before and after.")
	p("The peers see only a loopback DNS server (their own mount namespace's `/etc/resolv.conf`): nothing leaves")
	p("127.0.0.0/8. `--cpuprofile DIR` writes each Pullmail server's CPU profile. `--json` prints all of it for machines.")
	p("")
	p("Run: `%s` (%s mode), %s, %.0f s.", command, mode, r.Date, r.Seconds)
	p("Machine: %s, %d cores, %.1f GiB, %s. Versions: Go %s, Pullmail %s%s.", r.Machine.CPU, r.Machine.Cores,
		float64(r.Machine.MemBytes)/(1<<30), r.Machine.OS, strings.TrimPrefix(r.Versions["go"], "go"), r.Versions["pullmail"], peerVersions(r))
	for _, b := range r.Builds {
		if b.Cached {
			p("%s %s: built by an earlier run (cached).", b.Peer, b.Version)
		} else {
			p("%s %s: built in %.0f s (go mod download, copy, go build).", b.Peer, b.Version, b.Seconds)
		}
	}
	for n, why := range r.Skipped {
		p("%s: skipped: %s", n, why)
	}
	p("")
	peers := r.peers()
	vs := func(pm, other float64) string { return ratio(pm, other) }

	p("**Workload 5, the floors** (same run, same files): SHA-256 in Go, one plain loopback HTTPS copy written and")
	p("fsync'd by the receiver, one fsync'd file copy; and fsync'd 1 KiB file writes for workload 4.")
	p("")
	p("| size | SHA-256 | HTTPS copy | fsync'd write |")
	p("| --- | --- | --- | --- |")
	for _, f := range r.Floors {
		p("| %s | %s (%.0f MiB/s) | %s (%.0f MiB/s) | %s (%.0f MiB/s) |", mib(f.Size), secs(f.SHA256Seconds), mbps(f.Size, f.SHA256Seconds),
			secs(f.HTTPSCopySeconds), mbps(f.Size, f.HTTPSCopySeconds), secs(f.FsyncWriteSeconds), mbps(f.Size, f.FsyncWriteSeconds))
	}
	p("")
	p("| writers | fsync'd 1 KiB files/s | p50 | p99 |")
	p("| --- | --- | --- | --- |")
	for _, f := range r.SmallFloors {
		p("| %d | %.0f | %s | %s |", f.Writers, f.PerSecond, secs(f.P50), secs(f.P99))
	}
	p("")

	caseTable := func(title string, cases []Case) {
		if len(cases) == 0 {
			return
		}
		p("%s", title)
		p("")
		hdr := "| size | system | send → delivered | ÷ HTTPS copy | wire | ÷ payload | disk | ÷ payload | sender disk | peak RSS |"
		sep := "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
		for _, n := range peers {
			hdr += " Pullmail ÷ " + n + " (time, wire, disk, RSS) |"
			sep += " --- |"
		}
		p("%s", hdr)
		p("%s", sep)
		for _, c := range cases {
			fl := r.floor(c.Size)
			payload := float64(c.Size) * float64(c.Domains)
			var pm *Result
			for i := range c.Results {
				if c.Results[i].System == "pullmail" {
					pm = &c.Results[i]
				}
			}
			for _, res := range c.Results {
				t := secs(res.Seconds)
				if res.Refused != "" {
					t = "refused: " + oneLine(res.Refused)
					if res.Delivered > 0 {
						t = fmt.Sprintf("%s (%d of %d delivered; refused: %s)", secs(res.Seconds), res.Delivered, c.Recipients, oneLine(res.Refused))
					}
				}
				sd := "—"
				if res.System == "pullmail" {
					sd = mib(res.SenderDiskBytes)
				}
				disk, diskRatio := mib(res.DiskBytes), ratio(float64(res.DiskBytes), payload)
				if external(res.System) {
					disk, diskRatio = "—", "—" // in PostgreSQL and S3, not the data directory
				}
				row := fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", mib(c.Size), res.System, t,
					ratio(res.Seconds, fl.HTTPSCopySeconds), mib(res.WireBytes), ratio(float64(res.WireBytes), payload),
					disk, diskRatio, sd, rssText(res.PeakRSS))
				for _, n := range peers {
					if pm == nil || res.System != n || res.Delivered == 0 || pm.Delivered == 0 {
						row += " — |"
						continue
					}
					row += fmt.Sprintf(" %s, %s, %s, %s |", vs(pm.Seconds, res.Seconds), vs(float64(pm.WireBytes), float64(res.WireBytes)),
						vs(float64(pm.DiskBytes), float64(res.DiskBytes)), vs(float64(peakOf(pm.PeakRSS)), float64(peakOf(res.PeakRSS))))
				}
				p("%s", row)
			}
		}
		p("")
	}
	caseTable("**Workload 1: one message with an attachment**, a.test → u01@d1.test. Time: Pullmail from `Send` to the copy "+
		"`complete` in the recipient's inbox (push, verification, fetch token, pull); SMTP from connecting to the peer (the "+
		"recipient's MX) to its 250 after DATA (the message is then in the store). Floors: one loopback HTTPS copy; the "+
		"attachment's size for wire and disk. Disk is what the receiving domain's server added; sender disk what a.test "+
		"added (Pullmail only: the SMTP peers are measured as receiving MX alone, a sending MTA's queue copy is not counted).", r.Large)
	storesTable(p, r)
	baselineTable(p, r)
	if r.Repeat != nil {
		caseTable("**Workload 2: the same attachment again in a new message**: the extra bytes on the wire and on disk. "+
			"The SMTP peers receive and store it again; Pullmail's recipient domain already holds the resource.", []Case{*r.Repeat})
	}
	if r.Fanout != nil {
		caseTable(fmt.Sprintf("**Workload 3: fan-out**, one message with the attachment to %d recipients on %d domains. "+
			"SMTP: one transaction per recipient domain, in parallel, to the peer as every domain's MX. Floors: the "+
			"attachment × %d domains.", r.Fanout.Recipients, r.Fanout.Domains, r.Fanout.Domains), []Case{*r.Fanout})
	}

	if len(r.SMTPIn) > 0 {
		caseTable(smtpInTitle(false), r.SMTPIn[:1])
	}
	if len(r.SMTPIn) > 1 {
		caseTable(smtpInTitle(true), r.SMTPIn[1:])
	}

	if len(r.Small) > 0 {
		p("**Workload 4: %d small messages**, a.test → one recipient. Pullmail: a sender uploads the text, saves a draft and "+
			"sends without waiting for delivery; latency from `Send` returning to the copy complete in the recipient's changes "+
			"feed (polled every 10 ms). SMTP: one transaction per message over the sender's connection (a new one from a "+
			"new source address every %d messages); latency from MAIL to the 250 after DATA. Rate: delivered messages over "+
			"first send to last delivery. Floors: fsync'd 1 KiB file writes with as many writers.", r.Sizes.Small, maxPerConn)
		p("")
		hdr := "| senders | system | delivered | msgs/s | ÷ floor | p50 | ÷ floor | p99 | ÷ floor | peak RSS |"
		sep := "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
		for _, n := range peers {
			hdr += " Pullmail ÷ " + n + " (msgs/s, p50, p99) |"
			sep += " --- |"
		}
		p("%s", hdr)
		p("%s", sep)
		for _, c := range r.Small {
			fl := r.smallFloor(c.Senders)
			var pm *SmallResult
			for i := range c.Results {
				if c.Results[i].System == "pullmail" {
					pm = &c.Results[i]
				}
			}
			for _, res := range c.Results {
				d := fmt.Sprintf("%d", res.Delivered)
				if res.Refused != "" {
					d += " (refused: " + oneLine(res.Refused) + ")"
				}
				row := fmt.Sprintf("| %d | %s | %s | %.0f | %s | %s | %s | %s | %s | %s |", c.Senders, res.System, d, res.PerSecond,
					ratio(res.PerSecond, fl.PerSecond), secs(res.P50), ratio(res.P50, fl.P50), secs(res.P99), ratio(res.P99, fl.P99), rssText(res.PeakRSS))
				for _, n := range peers {
					if pm == nil || res.System != n || res.Delivered == 0 {
						row += " — |"
						continue
					}
					row += fmt.Sprintf(" %s, %s, %s |", vs(pm.PerSecond, res.PerSecond), vs(pm.P50, res.P50), vs(pm.P99, res.P99))
				}
				p("%s", row)
			}
		}
		p("")
	}

	if len(r.SMTPOut) > 0 {
		p("**Workload 8: %d small messages out to an SMTP domain** (issue 15): to %s, whose MX is the maddy peer. "+
			"Pullmail: a.test's user uploads, drafts and sends through the API, and a.test's MTA composes the MIME, DKIM-signs "+
			"it (Ed25519 and RSA) and delivers it by SMTP with STARTTLS (verified). maddy-relay: the benchmark submits each "+
			"message by SMTP to a second maddy, which queues it and delivers it with its remote target to the same peer. "+
			"The clock stops when the peer's store holds the message (a new file with its subject; polled every 10 ms): "+
			"rate over first send to last stored, latency from send (Pullmail: Send returned; relay: MAIL) to stored.", r.Sizes.SMTPOut, outRcpt)
		p("")
		p("| senders | system | delivered | msgs/s | p50 | p99 | peak RSS | Pullmail ÷ maddy-relay (msgs/s, p50, p99) |")
		p("| --- | --- | --- | --- | --- | --- | --- | --- |")
		for _, c := range r.SMTPOut {
			var pm *SmallResult
			for i := range c.Results {
				if c.Results[i].System == "pullmail" {
					pm = &c.Results[i]
				}
			}
			for _, res := range c.Results {
				d := fmt.Sprintf("%d", res.Delivered)
				if res.Refused != "" {
					d += " (refused: " + oneLine(res.Refused) + ")"
				}
				vs := "—"
				if pm != nil && res.System != "pullmail" && res.Delivered > 0 {
					vs = fmt.Sprintf("%s, %s, %s", ratio(pm.PerSecond, res.PerSecond), ratio(pm.P50, res.P50), ratio(pm.P99, res.P99))
				}
				p("| %d | %s | %s | %.0f | %s | %s | %s | %s |", c.Senders, res.System, d, res.PerSecond, secs(res.P50), secs(res.P99), rssText(res.PeakRSS), vs)
			}
		}
		p("")
	}

	if r.Import != nil {
		p("%s", importLine(r.Import))
		p("")
	}

	if len(peers) > 0 {
		p("**The peers' settings** (everything changed from their defaults):")
		p("")
		for _, n := range peers {
			p("- %s %s:", n, r.Versions[n])
			for _, s := range r.Settings[n] {
				p("  - %s", s)
			}
		}
		p("")
	}
	if len(r.Profiles) > 0 {
		p("CPU profiles: %s (`go tool pprof -top FILE`).", strings.Join(r.Profiles, ", "))
		p("")
	}
}

// resultOf is the result of system sys among rs, nil if it has none.
func resultOf[R interface{ Result | SmallResult }](rs []R, sys string) *R {
	for i := range rs {
		var name string
		switch r := any(rs[i]).(type) {
		case Result:
			name = r.System
		case SmallResult:
			name = r.System
		}
		if name == sys {
			return &rs[i]
		}
	}
	return nil
}

// noise is how far a ratio may stray from 1 before the baseline table
// calls a workload slower: two runs of one binary differ this much here.
const noise = 0.10

// baselineTable compares this binary with the baseline binary, both on
// SQLite and files, workload by workload (Options.Baseline).
func baselineTable(p func(string, ...any), r *Report) {
	if r.Baseline == "" {
		return
	}
	p("**Against the baseline binary** `%s` (same run, SQLite and files both): time ÷ the baseline's (above 1: slower) "+
		"and, for small messages, rate ÷ the baseline's (below 1: slower); “slower” beyond %.0f%%.", r.Baseline, noise*100)
	p("")
	p("| workload | pullmail | pullmail-baseline | ÷ | |")
	p("| --- | --- | --- | --- | --- |")
	verdict := func(worse bool) string {
		if worse {
			return "**slower**"
		}
		return "same or faster"
	}
	row := func(name string, cs []Case) {
		for _, c := range cs {
			a, b := resultOf(c.Results, "pullmail"), resultOf(c.Results, "pullmail-baseline")
			if a == nil || b == nil || b.Seconds == 0 {
				continue
			}
			q := a.Seconds / b.Seconds
			p("| %s %s | %s | %s | ×%.2f | %s |", name, mib(c.Size), secs(a.Seconds), secs(b.Seconds), q, verdict(q > 1+noise))
		}
	}
	row("1:", r.Large)
	if r.Repeat != nil {
		row("2: again", []Case{*r.Repeat})
	}
	if r.Fanout != nil {
		row("3: fan-out", []Case{*r.Fanout})
	}
	if len(r.SMTPIn) > 0 {
		row("6: SMTP in", r.SMTPIn[:1])
		row("6b: SMTP in again", r.SMTPIn[1:])
	}
	for _, c := range r.Small {
		a, b := resultOf(c.Results, "pullmail"), resultOf(c.Results, "pullmail-baseline")
		if a == nil || b == nil || b.PerSecond == 0 {
			continue
		}
		q := a.PerSecond / b.PerSecond
		p("| 4: %d small, %d senders | %.0f msgs/s, p99 %s | %.0f msgs/s, p99 %s | ×%.2f | %s |", c.Messages, c.Senders,
			a.PerSecond, secs(a.P99), b.PerSecond, secs(b.P99), q, verdict(q < 1-noise))
	}
	p("")
}

// external says a system keeps its data in the operator's stores
// (Options.Meta), where the run does not measure disk.
func external(system string) bool { return strings.HasPrefix(system, "pullmail-pg") }

// storesTable compares Pullmail on PostgreSQL and S3 with Pullmail on
// SQLite and files in the same run (issue 14): workload 1's time and
// workload 4's rate and p99.
func storesTable(p func(string, ...any), r *Report) {
	if r.Stores == "" {
		return
	}
	p("**PostgreSQL and S3 against SQLite and files** (issue 14; same run): pullmail-pg runs every domain on its own "+
		"database and bucket prefix of %s; pullmail-pg-2nodes runs a.test and the recipient's domain with two `serve` "+
		"nodes each on those stores (workload 4 only), behind one public port that spreads connections over the nodes. "+
		"Peak RSS lists each node and, where the stores run on this machine, the PostgreSQL processes (their VmHWM "+
		"counts the shared buffers they touched) and the S3 server.", r.Stores)
	p("")
	p("| workload | pullmail (SQLite, files) | pullmail-pg | ÷ | pullmail-pg-2nodes | ÷ | pullmail-pg peak RSS |")
	p("| --- | --- | --- | --- | --- | --- | --- |")
	for _, c := range r.Large {
		a, b := resultOf(c.Results, "pullmail"), resultOf(c.Results, "pullmail-pg")
		if a == nil || b == nil {
			continue
		}
		p("| 1: %s | %s | %s | %s | — | — | %s |", mib(c.Size), secs(a.Seconds), secs(b.Seconds), ratio(b.Seconds, a.Seconds), rssText(b.PeakRSS))
	}
	for _, c := range r.Small {
		a, b, b2 := resultOf(c.Results, "pullmail"), resultOf(c.Results, "pullmail-pg"), resultOf(c.Results, "pullmail-pg-2nodes")
		if a == nil || b == nil {
			continue
		}
		two, twoRatio := "—", "—"
		if b2 != nil {
			two = fmt.Sprintf("%.0f msgs/s, p99 %s", b2.PerSecond, secs(b2.P99))
			twoRatio = ratio(b2.PerSecond, a.PerSecond)
		}
		p("| 4: %d small, %d senders | %.0f msgs/s, p99 %s | %.0f msgs/s, p99 %s | %s | %s | %s | %s |", c.Messages, c.Senders,
			a.PerSecond, secs(a.P99), b.PerSecond, secs(b.P99), ratio(b.PerSecond, a.PerSecond), two, twoRatio, rssText(b.PeakRSS))
	}
	p("")
}

func peerVersions(r *Report) string {
	var s string
	for _, n := range PeerNames {
		if v, ok := r.Versions[n]; ok {
			s += ", " + n + " " + v
		}
	}
	return s
}

func mbps(n int64, s float64) float64 {
	if s == 0 {
		return 0
	}
	return float64(n) / (1 << 20) / s
}

// oneLine shortens a refusal for a table cell.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(strings.ReplaceAll(s, "|", "/")), " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
