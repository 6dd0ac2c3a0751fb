// Package bench is 'pullmail bench': it runs the same workloads on
// Pullmail domains and on two real SMTP servers written in Go, maddy and
// mox, all on loopback in one run, next to the physical floors of the same
// machine (SHA-256 of the file, a plain loopback HTTPS copy, an fsync'd
// write), so that every figure can be read as a ratio to its floor and to
// each peer (issue 7).
//
// Every Pullmail domain is its own 'pullmail serve' process (the running
// binary) of a sandbox (package sandbox), found through SRV records in a
// DNS server of the run's own. The peers are built from the Go module
// proxy on first use and cached. Each
// server's port has a counting TCP proxy in front (bytes between domains),
// peak RSS is each server's VmHWM (reset before each workload), and disk is
// the space allocated to the files of each data directory (st_blocks × 512,
// hard links once). Nothing leaves 127.0.0.0/8.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pullmail/pullmail/tlsca"
)

// Options say what to run.
type Options struct {
	// Binary is the pullmail binary whose 'serve' runs every domain
	// (the command passes os.Executable()).
	Binary string
	// Quick runs small sizes and few messages: a check that the tool
	// works, not figures to quote.
	Quick bool
	// Peers are the SMTP servers to compare with: "maddy", "mox".
	Peers []string
	// CacheDir keeps the peers' binaries between runs.
	CacheDir string
	// CPUProfileDir, when set, makes each Pullmail server write its CPU
	// profile there, DOMAIN.cpu.pprof.
	CPUProfileDir string
	// TempDir holds every data directory of the run ("": the system's).
	TempDir string
	// Progress gets a line per step (stderr); nil: none.
	Progress io.Writer
	// Sizes overrides the sizes of the mode (tests).
	Sizes *Sizes
	// Meta and Resources, when set (both), run the workloads again on
	// Pullmail domains whose stores are PostgreSQL (a postgres:// URL of
	// a server where the role may create databases) and S3 (an s3://
	// URL; credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY),
	// one database and one prefix per domain, removed at the end:
	// "pullmail-pg"; and workload 4 on two nodes per domain of those
	// stores, "pullmail-pg-2nodes" (issue 14).
	Meta, Resources string
	// Baseline, when set, is another pullmail binary (the previous
	// commit's, say) whose 'serve' runs the same workloads on SQLite and
	// files in the same run, "pullmail-baseline", so that a change is
	// measured against what it changes on the same machine at the same
	// moment (issue 14: no workload slower beyond noise). It must take
	// the serve flags this version passes.
	Baseline string
}

// Sizes are the workloads' parameters.
type Sizes struct {
	Large           []int64 `json:"large"`              // workload 1
	Repeat          int64   `json:"repeat"`             // workload 2: sent again (one of Large)
	Fanout          int64   `json:"fanout"`             // workload 3
	FanoutDomains   int     `json:"fanout_domains"`     // workload 3
	FanoutPerDomain int     `json:"fanout_per_domain"`  // workload 3
	Small           int     `json:"small"`              // workload 4: messages per run
	Senders         []int   `json:"senders"`            // workload 4
	SMTPIn          int64   `json:"smtp_in,omitempty"`  // workload 6 (0: not run)
	SMTPOut         int     `json:"smtp_out,omitempty"` // workload 8: messages per run (0: not run)
	Import          int64   `json:"import,omitempty"`   // workload 9: bytes of mbox (0: not run)
}

// FullSizes are the workloads.
func FullSizes() Sizes {
	return Sizes{Large: []int64{1 << 20, 50 << 20, 1 << 30}, Repeat: 50 << 20, Fanout: 100 << 20,
		FanoutDomains: 5, FanoutPerDomain: 20, Small: 10000, Senders: []int{1, 16}, SMTPIn: 50 << 20, SMTPOut: 1000, Import: 1 << 30}
}

// QuickSizes run in well under a minute once the peers are built.
func QuickSizes() Sizes {
	return Sizes{Large: []int64{1 << 20, 8 << 20}, Repeat: 8 << 20, Fanout: 4 << 20,
		FanoutDomains: 5, FanoutPerDomain: 2, Small: 200, Senders: []int{1, 16}, SMTPIn: 8 << 20, SMTPOut: 100, Import: 16 << 20}
}

// Report is everything a run measured; 'pullmail bench --json' prints it.
type Report struct {
	Date     string              `json:"date"`
	Quick    bool                `json:"quick"`
	Seconds  float64             `json:"seconds"` // the whole run
	Machine  Machine             `json:"machine"`
	Versions map[string]string   `json:"versions"`
	Sizes    Sizes               `json:"sizes"`
	Builds   []Build             `json:"builds,omitempty"`
	Settings map[string][]string `json:"peer_settings,omitempty"`
	Skipped  map[string]string   `json:"peers_skipped,omitempty"` // peer → why
	Profiles []string            `json:"cpu_profiles,omitempty"`
	// Baseline is the binary of pullmail-baseline (Options.Baseline).
	Baseline string `json:"baseline,omitempty"`
	// Stores names the PostgreSQL and S3 of pullmail-pg (Options.Meta),
	// without credentials.
	Stores string `json:"stores,omitempty"`

	resolv string    // the peers' resolv.conf
	peerCA *tlsca.CA // their certificates' CA

	Floors      []Floor       `json:"floors"`           // workload 5, one per file size
	SmallFloors []SmallFloor  `json:"small_floors"`     // workload 5 for workload 4
	Large       []Case        `json:"large"`            // workload 1
	Repeat      *Case         `json:"repeat"`           // workload 2
	Fanout      *Case         `json:"fanout"`           // workload 3
	Small       []SmallCase   `json:"small"`            // workload 4
	SMTPIn      []Case        `json:"smtp_in"`          // workload 6: first, then again
	SMTPOut     []SmallCase   `json:"smtp_out"`         // workload 8
	Import      *ImportResult `json:"import,omitempty"` // workload 9
}

// Machine is what the run ran on.
type Machine struct {
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	MemBytes int64  `json:"mem_bytes"`
	OS       string `json:"os"`
}

// Case is one message with an attachment, on every system.
type Case struct {
	Workload   int      `json:"workload"`
	Size       int64    `json:"size"`
	Recipients int      `json:"recipients"`
	Domains    int      `json:"domains"` // receiving domains
	Results    []Result `json:"results"`
}

// Result is one system's figures for a Case.
type Result struct {
	System string `json:"system"`
	// Refused says why the system did not take the message (its reply),
	// and the other figures are then what it cost until then.
	Refused string `json:"refused,omitempty"`
	// Seconds runs from the send (Pullmail: Send; SMTP: connecting to the
	// receiving server) until every copy is delivered (Pullmail: complete
	// in each recipient's inbox; SMTP: the 250 after DATA, the message in
	// the store).
	Seconds   float64 `json:"seconds"`
	Delivered int     `json:"delivered"` // recipients whose copy arrived
	WireBytes int64   `json:"wire_bytes"`
	// DiskBytes is what the receiving domains' servers added to their
	// disk; SenderDiskBytes what the sending domain added (Pullmail only:
	// the SMTP peers are measured as receiving MX alone).
	DiskBytes       int64            `json:"disk_bytes"`
	SenderDiskBytes int64            `json:"sender_disk_bytes,omitempty"`
	UploadSeconds   float64          `json:"upload_seconds,omitempty"` // Pullmail: the attachment into the sender's own server, before Send
	PeakRSS         map[string]int64 `json:"peak_rss"`                 // by server
}

// SmallCase is workload 4 with one number of senders.
type SmallCase struct {
	Senders  int           `json:"senders"`
	Messages int           `json:"messages"`
	Results  []SmallResult `json:"results"`
}

// SmallResult is one system's figures for a SmallCase.
type SmallResult struct {
	System    string  `json:"system"`
	Refused   string  `json:"refused,omitempty"` // the first refusal, if any
	Delivered int     `json:"delivered"`
	PerSecond float64 `json:"per_second"` // delivered messages over first send to last delivery
	// P50 and P99 are each message's time from send to delivered
	// (Pullmail: Send returned to complete in the recipient's changes
	// feed; SMTP: MAIL to the 250 after DATA).
	P50       float64          `json:"p50_seconds"`
	P99       float64          `json:"p99_seconds"`
	WireBytes int64            `json:"wire_bytes"`
	PeakRSS   map[string]int64 `json:"peak_rss"`
	// SentPerSecond is the senders' own rate (Pullmail): above
	// PerSecond, copies queue at the receiving domain.
	SentPerSecond float64 `json:"sent_per_second,omitempty"`
}

// system is one mail system under test.
type system interface {
	name() string
	// SendFile sends one message with the file at path to rcpts and
	// returns once every copy is delivered; Seconds, Delivered, Refused
	// and UploadSeconds are its to fill.
	SendFile(ctx context.Context, path string, size int64, rcpts []string, subject string) (Result, error)
	// SendSmall sends n small messages to rcpt with senders at once.
	SendSmall(ctx context.Context, n, senders int, rcpt string) (SmallResult, error)
	wire() int64
	// disk is the bytes the receiving domains of rcpts hold, and the
	// sending domain's (0 for a peer).
	disk(rcpts []string) (recv, send int64, err error)
	pids() map[string]int
}

const sender = "alice@a.test"

// Run runs every workload and returns the report.
func Run(ctx context.Context, opt Options) (*Report, error) {
	if opt.Binary == "" {
		return nil, errNoBinary
	}
	start := time.Now()
	progress := opt.Progress
	if progress == nil {
		progress = io.Discard
	}
	logf := func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) }
	// peerLog shows, after a refusal, the last lines a peer logged: its
	// reply alone ("internal server error") rarely says why.
	peerLog := func(sys system, refused string) {
		if t, ok := sys.(interface{ logTail() string }); ok && refused != "" {
			logf("  %s's last log lines:\n%s", sys.name(), t.logTail())
		}
	}
	sz := FullSizes()
	if opt.Quick {
		sz = QuickSizes()
	}
	if opt.Sizes != nil {
		sz = *opt.Sizes
	}
	if sz.Repeat != 0 && !slices.Contains(sz.Large, sz.Repeat) {
		return nil, fmt.Errorf("the repeated size %d is not one of workload 1's", sz.Repeat)
	}
	r := &Report{Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Quick: opt.Quick, Machine: machine(),
		Versions: versions(opt.Binary), Sizes: sz, Settings: map[string][]string{}, Skipped: map[string]string{}}

	dir, err := os.MkdirTemp(opt.TempDir, "pullmail-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o700); err != nil {
		return nil, err
	}

	// Recipients: FanoutPerDomain users on each of FanoutDomains domains
	// (at least one domain with two users: workloads 1, 2 and 4 use them).
	nd, per := max(1, sz.FanoutDomains), max(1, sz.FanoutPerDomain)
	var rcpts []string
	for d := 1; d <= nd; d++ {
		for u := 1; u <= per; u++ {
			rcpts = append(rcpts, fmt.Sprintf("u%02d@d%d.test", u, d))
		}
	}
	bigRcpt, smallRcpt := rcpts[0], rcpts[len(rcpts)-1]
	var rcptDomains []string
	for d := 1; d <= nd; d++ {
		rcptDomains = append(rcptDomains, fmt.Sprintf("d%d.test", d))
	}

	// Workload 5: the floors, first, on a quiet machine.
	sizes := append(slices.Clone(sz.Large), sz.Fanout)
	slices.Sort(sizes)
	sizes = slices.Compact(sizes)
	sizes = slices.DeleteFunc(sizes, func(n int64) bool { return n <= 0 }) // a workload not run
	paths := map[int64]string{}
	for i, s := range sizes {
		p := filepath.Join(files, fmt.Sprintf("attachment-%d.bin", s))
		if err := MakeFile(p, s, byte(i+1)); err != nil {
			return nil, fmt.Errorf("writing the attachment: %w", err)
		}
		paths[s] = p
		fl, err := measureFloor(p, files)
		if err != nil {
			return nil, fmt.Errorf("floors: %w", err)
		}
		logf("floor %s: sha256 %.3fs, https copy %.3fs, fsync'd write %.3fs", mib(s), fl.SHA256Seconds, fl.HTTPSCopySeconds, fl.FsyncWriteSeconds)
		r.Floors = append(r.Floors, fl)
	}
	// Workload 6's attachment: bytes no system holds yet (the others'
	// would be found stored by Pullmail's MX and cost no disk).
	var smtpInPath string
	if sz.SMTPIn > 0 {
		smtpInPath = filepath.Join(files, fmt.Sprintf("smtp-in-%d.bin", sz.SMTPIn))
		if err := MakeFile(smtpInPath, sz.SMTPIn, byte(len(sizes)+1)); err != nil {
			return nil, fmt.Errorf("writing the attachment: %w", err)
		}
		if !slices.Contains(sizes, sz.SMTPIn) {
			fl, err := measureFloor(smtpInPath, files)
			if err != nil {
				return nil, fmt.Errorf("floors: %w", err)
			}
			r.Floors = append(r.Floors, fl)
		}
	}
	for _, w := range sz.Senders {
		fl, err := measureSmallFloor(files, min(sz.Small, 2000), w)
		if err != nil {
			return nil, fmt.Errorf("small floor: %w", err)
		}
		logf("floor: %d writer(s), %.0f fsync'd 1 KiB files/s", w, fl.PerSecond)
		r.SmallFloors = append(r.SmallFloors, fl)
	}

	// The systems.
	var systems []system
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	if opt.CPUProfileDir != "" {
		if err := os.MkdirAll(opt.CPUProfileDir, 0o755); err != nil {
			return nil, err
		}
		if opt.CPUProfileDir, err = filepath.Abs(opt.CPUProfileDir); err != nil {
			return nil, err
		}
	}
	// The peers first: Pullmail's MTA dials maddy's port for out.test
	// (workload 8).
	var peers []*peer
	if len(opt.Peers) > 0 {
		if peers, err = startPeers(ctx, opt, r, dir, rcptDomains, rcpts, logf); err != nil {
			return nil, err
		}
		for _, p := range peers {
			closers = append(closers, p.stop)
		}
	}
	var maddy *peer
	for _, p := range peers {
		if p.name == "maddy" {
			maddy = p
		}
	}
	var serveFlags []string
	if maddy != nil {
		serveFlags = []string{"--smtp-out-port", strconv.Itoa(maddy.proxyPort())}
	}
	logf("starting %d Pullmail domains", 1+nd)
	users := append([]string{sender}, rcpts...)
	pm, profiles, err := startPullmail(ctx, opt.Binary, pullmailRun{label: "pullmail", dir: filepath.Join(dir, "pullmail"),
		profileDir: opt.CPUProfileDir, users: users, serveFlags: serveFlags})
	if err != nil {
		return nil, err
	}
	closers = append(closers, pm.close)
	systems = append(systems, pm)
	smallOnly := []system{} // systems of workload 4 alone
	if opt.Baseline != "" {
		logf("starting %d Pullmail domains of the baseline %s", 1+nd, opt.Baseline)
		base, profs, err := startPullmail(ctx, opt.Baseline, pullmailRun{label: "pullmail-baseline", dir: filepath.Join(dir, "pullmail-baseline"),
			profileDir: opt.CPUProfileDir, users: users, serveFlags: serveFlags})
		if err != nil {
			return nil, fmt.Errorf("the baseline: %w", err)
		}
		closers = append(closers, base.close)
		systems = append(systems, base)
		for d, p := range profs {
			profiles["pullmail-baseline/"+d] = p
		}
		r.Baseline = opt.Baseline
	}
	if opt.Meta != "" || opt.Resources != "" {
		if opt.Meta == "" || opt.Resources == "" {
			return nil, errors.New("--meta and --resources go together (PostgreSQL and S3)")
		}
		stores, err := newSharedStores(opt.Meta, opt.Resources)
		if err != nil {
			return nil, err
		}
		closers = append(closers, func() {
			if err := stores.close(); err != nil {
				logf("removing the run's databases and objects: %v", err)
			}
		})
		logf("starting %d Pullmail domains on PostgreSQL and S3", 1+nd)
		pg, profs, err := startPullmail(ctx, opt.Binary, pullmailRun{label: "pullmail-pg", dir: filepath.Join(dir, "pullmail-pg"),
			profileDir: opt.CPUProfileDir, users: users, stores: stores})
		if err != nil {
			return nil, err
		}
		closers = append(closers, pg.close)
		systems = append(systems, pg)
		_, smallDomain, _ := strings.Cut(smallRcpt, "@")
		logf("starting a.test and %s with two nodes each on PostgreSQL and S3", smallDomain)
		pg2, profs2, err := startPullmail(ctx, opt.Binary, pullmailRun{label: "pullmail-pg-2nodes", dir: filepath.Join(dir, "pullmail-pg2"),
			profileDir: opt.CPUProfileDir, users: []string{sender, smallRcpt}, stores: stores,
			nodes: map[string]int{"a.test": 2, smallDomain: 2}})
		if err != nil {
			return nil, err
		}
		closers = append(closers, pg2.close)
		smallOnly = append(smallOnly, pg2)
		for d, p := range profs {
			profiles["pullmail-pg/"+d] = p
		}
		for d, p := range profs2 {
			profiles["pullmail-pg-2nodes/"+d] = p
		}
		r.Stores = fmt.Sprintf("PostgreSQL %s, S3 %s", redactURL(opt.Meta), redactURL(opt.Resources))
	}
	pm.Sandbox.Directory.DNS.AddMX(outDomain, 10, outMX)
	pm.Sandbox.Directory.DNS.AddA(outMX, "127.0.0.1")
	for _, p := range peers {
		systems = append(systems, &smtpSystem{peer: p})
	}

	// Workloads 1 and 2.
	for _, s := range sz.Large {
		c := Case{Workload: 1, Size: s, Recipients: 1, Domains: 1}
		for _, sys := range systems {
			res, err := measure(ctx, sys, paths[s], s, []string{bigRcpt}, fmt.Sprintf("w1 %s", mib(s)))
			if err != nil {
				return nil, err
			}
			logf("w1 %s %s: %s", mib(s), sys.name(), res.brief())
			peerLog(sys, res.Refused)
			c.Results = append(c.Results, res)
		}
		r.Large = append(r.Large, c)
	}
	if sz.Repeat > 0 {
		c := Case{Workload: 2, Size: sz.Repeat, Recipients: 1, Domains: 1}
		for _, sys := range systems {
			res, err := measure(ctx, sys, paths[sz.Repeat], sz.Repeat, []string{bigRcpt}, fmt.Sprintf("w2 %s again", mib(sz.Repeat)))
			if err != nil {
				return nil, err
			}
			logf("w2 %s again %s: %s", mib(sz.Repeat), sys.name(), res.brief())
			peerLog(sys, res.Refused)
			c.Results = append(c.Results, res)
		}
		r.Repeat = &c
	}

	// Workload 6.
	if sz.SMTPIn > 0 {
		cs, err := smtpInCases(ctx, systems, smtpInPath, sz.SMTPIn, bigRcpt, logf)
		if err != nil {
			return nil, err
		}
		r.SMTPIn = cs
	}

	// Workload 3.
	if sz.Fanout > 0 {
		c := Case{Workload: 3, Size: sz.Fanout, Recipients: len(rcpts), Domains: nd}
		for _, sys := range systems {
			res, err := measure(ctx, sys, paths[sz.Fanout], sz.Fanout, rcpts, fmt.Sprintf("w3 fan-out %s", mib(sz.Fanout)))
			if err != nil {
				return nil, err
			}
			logf("w3 %s to %d on %d domains %s: %s", mib(sz.Fanout), len(rcpts), nd, sys.name(), res.brief())
			peerLog(sys, res.Refused)
			c.Results = append(c.Results, res)
		}
		r.Fanout = &c
	}

	// Workload 4 (the senders serve workload 8 too).
	for _, w := range sz.Senders {
		if sz.Small == 0 {
			break
		}
		c := SmallCase{Senders: w, Messages: sz.Small}
		for _, sys := range append(slices.Clone(systems), smallOnly...) {
			pids := sys.pids()
			rssOf(pids, true)
			w0 := sys.wire()
			res, err := sys.SendSmall(ctx, sz.Small, w, smallRcpt)
			if err != nil {
				return nil, fmt.Errorf("%s: %d small messages, %d senders: %w", sys.name(), sz.Small, w, err)
			}
			res.System, res.WireBytes, res.PeakRSS = sys.name(), sys.wire()-w0, rssOf(pids, false)
			logf("w4 %d senders %s: %d delivered, %.0f msgs/s, p50 %.3fs, p99 %.3fs %s", w, sys.name(), res.Delivered, res.PerSecond, res.P50, res.P99, res.Refused)
			peerLog(sys, res.Refused)
			c.Results = append(c.Results, res)
		}
		r.Small = append(r.Small, c)
	}

	// Workload 8.
	if sz.SMTPOut > 0 && maddy != nil {
		outs := []outSender{pm}
		relay, err := startRelay(ctx, opt, r, dir, maddy, logf)
		if err != nil {
			r.Skipped["maddy-relay"] = err.Error()
			logf("workload 8 without maddy relaying: %v", err)
		} else {
			closers = append(closers, relay.stop)
			outs = append(outs, &relaySystem{relay: relay})
		}
		cs, err := smtpOutCases(ctx, outs, maddy.pids(), maddy.msgDirs, sz.SMTPOut, sz.Senders, logf)
		if err != nil {
			return nil, err
		}
		r.SMTPOut = cs
	}

	// Workload 9: no server, the import command alone.
	if sz.Import > 0 {
		res, err := runImport(ctx, opt.Binary, dir, sz.Import)
		if err != nil {
			return nil, fmt.Errorf("workload 9: %w", err)
		}
		logf("w9 import %s: %d messages in %.1fs, %.1f MiB/s, peak RSS %s", mib(res.Bytes), res.Messages, res.Seconds, mbps(res.Bytes, res.Seconds), mib(res.PeakRSS))
		r.Import = res
	}

	// Stop the servers now: each Pullmail server writes its CPU profile as
	// it ends.
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	closers = nil
	for _, p := range profiles {
		if _, err := os.Stat(p); err == nil {
			r.Profiles = append(r.Profiles, p)
		}
	}
	slices.Sort(r.Profiles)
	r.Seconds = time.Since(start).Seconds()
	return r, nil
}

// measure runs one sendFile on sys with wire, disk and peak RSS around it.
func measure(ctx context.Context, sys system, path string, size int64, rcpts []string, subject string) (Result, error) {
	pids := sys.pids()
	rssOf(pids, true)
	w0 := sys.wire()
	r0, s0, err := sys.disk(rcpts)
	if err != nil {
		return Result{}, err
	}
	res, err := sys.SendFile(ctx, path, size, rcpts, subject)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %s: %w", sys.name(), subject, err)
	}
	r1, s1, err := sys.disk(rcpts)
	if err != nil {
		return Result{}, err
	}
	res.System = sys.name()
	res.WireBytes, res.DiskBytes, res.SenderDiskBytes = sys.wire()-w0, r1-r0, s1-s0
	res.PeakRSS = rssOf(pids, false)
	return res, nil
}

func (r Result) brief() string {
	s := fmt.Sprintf("%.3fs, %d delivered, wire %s, disk %s", r.Seconds, r.Delivered, mib(r.WireBytes), mib(r.DiskBytes))
	if r.Refused != "" {
		s += ", refused: " + r.Refused
	}
	return s
}

// startPeers builds and starts the chosen peers; a peer that cannot be
// built or started is skipped with the reason in the report.
func startPeers(ctx context.Context, opt Options, r *Report, dir string, rcptDomains, rcpts []string, logf func(string, ...any)) ([]*peer, error) {
	pdns, err := startPeerDNS("a.test")
	if err != nil {
		return nil, err
	}
	// out.test's MX is maddy (workload 8), for its relay.
	pdns.recs.AddMX(outDomain, 10, outMX)
	pdns.recs.AddA(outMX, "127.0.0.1")
	resolv, err := checkIsolation(dir, pdns.addr)
	if err != nil {
		pdns.Close()
		return nil, err
	}
	// The peers' certificates come from the Pullmail domains' CA (the
	// sandbox's, in dir/pullmail), which a.test's MTA trusts: its STARTTLS
	// to maddy verifies, as it would on the Internet.
	ca, err := tlsca.LoadOrCreate(filepath.Join(dir, "pullmail"))
	if err != nil {
		pdns.Close()
		return nil, err
	}
	var peers []*peer
	for _, name := range opt.Peers {
		spec, ok := peerSpecs[name]
		if !ok {
			pdns.Close()
			return nil, fmt.Errorf("unknown peer %q (known: %s)", name, strings.Join(PeerNames, ", "))
		}
		b, err := buildPeer(ctx, spec, opt.CacheDir, opt.Progress)
		if err != nil {
			r.Skipped[name] = err.Error()
			logf("skipping %s: %v", name, err)
			continue
		}
		if b.Cached {
			logf("%s %s: cached %s", name, spec.version, b.Binary)
		} else {
			logf("%s %s: built in %.1fs", name, spec.version, b.Seconds)
		}
		r.Builds = append(r.Builds, b)
		r.Versions[name] = spec.version
		pdir := filepath.Join(dir, name)
		if err := os.MkdirAll(pdir, 0o700); err != nil {
			return nil, err
		}
		var p *peer
		switch name {
		case "maddy":
			p, err = startMaddy(ctx, b.Binary, pdir, resolv, ca, append(slices.Clone(rcpts), outRcpt))
		case "mox":
			p, err = startMox(ctx, b.Binary, pdir, resolv, rcptDomains, rcpts)
		}
		if err != nil {
			r.Skipped[name] = err.Error()
			logf("skipping %s: %v", name, err)
			continue
		}
		logf("%s listening on %s (proxy %s)", name, fmt.Sprintf("127.0.0.1:%d", p.port), p.addr())
		r.Settings[name] = p.settings
		peers = append(peers, p)
	}
	if len(peers) == 0 {
		pdns.Close()
		return nil, nil
	}
	// The DNS server goes with the last peer.
	peers[len(peers)-1].onStop = pdns.Close
	r.resolv, r.peerCA = resolv, ca
	return peers, nil
}

// startRelay builds (once) and starts maddy as a relay to maddy's port.
func startRelay(ctx context.Context, opt Options, r *Report, dir string, maddy *peer, logf func(string, ...any)) (*peer, error) {
	b, err := buildPeer(ctx, relaySpec, opt.CacheDir, opt.Progress)
	if err != nil {
		return nil, err
	}
	if err := checkRelay(b.Binary); err != nil {
		return nil, err
	}
	pdir := filepath.Join(dir, "maddy-relay")
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		return nil, err
	}
	p, err := startMaddyRelay(ctx, b.Binary, pdir, r.resolv, r.peerCA, maddy.proxyPort())
	if err != nil {
		return nil, err
	}
	logf("maddy relay listening on 127.0.0.1:%d (proxy %s), delivering to %s", p.port, p.addr(), maddy.addr())
	r.Settings["maddy-relay"] = p.settings
	return p, nil
}

// machine describes this computer.
func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				fmt.Sscanf(strings.TrimPrefix(l, "MemTotal:"), "%d", &kb)
			}
		}
		m.MemBytes = kb << 10
	}
	return m
}

// versions names the Go toolchain and Pullmail's commit: from the
// binary's build information, else from git in the working directory.
func versions(bin string) map[string]string {
	v := map[string]string{"go": runtime.Version(), "pullmail": "unknown"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			v["pullmail"] = rev[:min(12, len(rev))] + dirty
			return v
		}
	}
	if out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		v["pullmail"] = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			v["pullmail"] += "-dirty"
		}
	}
	return v
}

// JSON renders the report.
func (r *Report) JSON() ([]byte, error) {
	return json.MarshalIndent(r, "", "  ")
}

var errNoBinary = errors.New("bench: Options.Binary is required")
