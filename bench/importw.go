package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Workload 9 (issue 15): 'pullmail import' of an mbox file into a fresh
// SQLite and files data directory, the command as an operator runs it:
// MiB/s of the file and the process's peak RSS (its rusage). The file is
// 'pullmail bench mbox': text messages and messages with attachments of
// random bytes, so nothing dedupes.

// ImportResult is workload 9's figures.
type ImportResult struct {
	Bytes    int64   `json:"bytes"`    // the mbox file's size
	Messages int     `json:"messages"` // imported
	Failed   int     `json:"failed"`
	Seconds  float64 `json:"seconds"` // the import command, start to exit
	PeakRSS  int64   `json:"peak_rss"`
	// DiskBytes is what the data directory holds after (the decoded
	// attachments, the texts, the records and the SQLite database).
	DiskBytes int64 `json:"disk_bytes"`
}

// runImport writes the mbox of size, then imports it with bin.
func runImport(ctx context.Context, bin, dir string, size int64) (*ImportResult, error) {
	mbox := filepath.Join(dir, "import.mbox")
	if out, err := exec.CommandContext(ctx, bin, "bench", "mbox", "--size", strconv.FormatInt(size, 10), mbox).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pullmail bench mbox: %v: %s", err, lastLines(string(out), 3))
	}
	defer os.Remove(mbox)
	fi, err := os.Stat(mbox)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "import-data")
	const user = "alice@a.test"
	if out, err := exec.CommandContext(ctx, bin, "user", "add", "--data", data, "--password", "correct horse battery", user).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pullmail user add: %v: %s", err, lastLines(string(out), 3))
	}
	cmd := exec.CommandContext(ctx, bin, "import", "--data", data, "--json", user, mbox)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	secs := time.Since(start).Seconds()
	if err != nil {
		return nil, fmt.Errorf("pullmail import: %v: %s", err, lastLines(stderr.String(), 3))
	}
	var sum struct{ Imported, Failed int }
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		return nil, fmt.Errorf("pullmail import --json: %w: %s", err, lastLines(stdout.String(), 3))
	}
	res := &ImportResult{Bytes: fi.Size(), Messages: sum.Imported, Failed: sum.Failed, Seconds: secs}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.PeakRSS = ru.Maxrss << 10 // KiB on Linux
	}
	if res.DiskBytes, err = diskBytes(data); err != nil {
		return nil, err
	}
	return res, nil
}

// importLine is workload 9 in the report.
func importLine(r *ImportResult) string {
	return strings.Join([]string{
		fmt.Sprintf("**Workload 9: `pullmail import` of a %s mbox** (issue 15; %d messages, 3 in 10 with an attachment of random "+
			"bytes, written by `pullmail bench mbox`) into a new SQLite and files data directory: ", mib(r.Bytes), r.Messages),
		fmt.Sprintf("%s, %.1f MiB/s, peak RSS %s, %s on disk after (×%.2f the file, whose attachments are base64); %d failed.",
			secs(r.Seconds), mbps(r.Bytes, r.Seconds), mib(r.PeakRSS), mib(r.DiskBytes), float64(r.DiskBytes)/float64(max(1, r.Bytes)), r.Failed),
	}, "")
}
