package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/atomicfile"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/mailfile"
	"github.com/pullmail/pullmail/mimeconv"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/server"
)

func init() {
	register(&command{
		name: "import", args: "--data DIR ADDRESS PATH [--json] [--mbox-variant mboxrd|mboxo] [--max-size N]",
		short: "import an mbox file or a Maildir into a user's mailbox",
		long: `Imports the messages of PATH, an mbox file or a Maildir directory (told apart by what
it is), into the mailbox of ADDRESS, converted as mail that comes in by SMTP is (every
attachment a resource, stored once however many messages carry it; the original bytes
kept, so that export writes each back exactly: docs/PROTOCOL.md §13).

Each message lands in inbox, complete, read if the file says so (Maildir flag S, mbox
Status R); a deleted one (Maildir T, mbox X-Status D) in trash. The mailbox has no state
for replied (R, A) or flagged (F), and its drafts folder holds its own editable drafts, not
another client's (D, X-Status T): those flags are left out (the bytes keep mbox's fields).

An import can be stopped at any point and run again: it stores no message twice (a
message already imported for the user, by the SHA-256 of its bytes, is skipped however
long ago, while the user keeps that copy, in trash too), and on an mbox file it carries on where it stopped (a journal in DIR/import
names the offset reached and the digest of the file's bytes before it; a file changed
before that point is read from the start again). A message that cannot be imported
(larger than --max-size, unreadable, refused by the mailbox) is counted as failed with
its reason, and the import goes on; the exit status is then 1.

The summary (imported, skipped, failed, with reasons) goes to stdout, as JSON with --json;
a progress bar to stderr when it is a terminal.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			asJSON := fs.Bool("json", false, "print the summary as JSON")
			variant := fs.String("mbox-variant", "mboxrd", "how the mbox file quotes From_ lines: mboxrd or mboxo")
			maxSize := fs.Int64("max-size", 1<<30, "the largest message imported, in `bytes` (larger ones fail)")
			fs.String("key-file", "", "the at-rest encryption key of an encrypted store (default DIR/keys/resource.key)")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 2 {
					return usagef("import takes ADDRESS PATH")
				}
				v, err := mailfile.ParseVariant(*variant)
				if err != nil {
					return usagef("%v", err)
				}
				b, addr, domain, err := openMailbox(ctx, data, args[0])
				if err != nil {
					return err
				}
				defer b.Close()
				mbx := mailbox.New(mailbox.Config{Domain: domain, Meta: b.Meta, Resources: b.Resources})
				cfg := ImportConfig{Mailbox: mbx, Resources: b.Resources, Address: addr, Path: args[1],
					Variant: v, MaxSize: *maxSize, JournalDir: filepath.Join(*data.dir, "import")}
				var bar *progressbar.ProgressBar
				if env.IsTerminal(env.Stderr) {
					cfg.Progress = func(done, total int64) {
						if bar == nil {
							bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(env.Stderr),
								progressbar.OptionSetDescription("importing"), progressbar.OptionShowBytes(true),
								progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
						}
						_ = bar.Set64(done)
					}
				}
				sum, err := ImportMail(ctx, cfg)
				if bar != nil {
					_ = bar.Finish()
				}
				if err != nil && sum.Source == "" {
					return err
				}
				if *asJSON {
					if perr := printJSON(env, sum); perr != nil {
						return perr
					}
				} else {
					sum.print(env.Stdout)
				}
				if err != nil {
					return err
				}
				if sum.Failed > 0 {
					return fmt.Errorf("%d message(s) of %s failed", sum.Failed, safe(args[1]))
				}
				return nil
			}
		},
	})
}

// openMailbox opens a data directory's stores for an admin command on the
// mail of address, binding its domain on first use.
func openMailbox(ctx context.Context, data *dataFlags, address string) (*server.Backends, string, string, error) {
	addr, err := account.NormalizeAddress(address)
	if err != nil {
		return nil, "", "", fmt.Errorf("%q: %w", address, err)
	}
	_, domain, _ := strings.Cut(addr, "@")
	b, err := data.open(ctx)
	if err != nil {
		return nil, "", "", err
	}
	if _, err := server.BindDomain(ctx, b.Meta, domain); err != nil {
		b.Close()
		return nil, "", "", err
	}
	if _, err := b.Meta.UserByAddress(ctx, addr); err != nil {
		b.Close()
		return nil, "", "", fmt.Errorf("no such user %s: %w", addr, err)
	}
	return b, addr, domain, nil
}

// ImportConfig is one import of a mail file into a mailbox.
type ImportConfig struct {
	Mailbox   *mailbox.Service // the one writer of mailbox rows
	Resources resource.Store   // where the converted parts go
	Address   string           // the user's, normalised
	Path      string           // an mbox file or a Maildir
	Variant   mailfile.Variant // of an mbox file
	// MaxSize fails messages larger than this many bytes (0: no limit).
	MaxSize int64
	// JournalDir keeps where each mbox import got to ("": no journal;
	// the digests alone then keep a run again from storing twice).
	JournalDir string
	// TempDir is where mimeconv spills large bodies ("": os.TempDir()).
	TempDir string
	// Progress, if set, is told the bytes of the source done and in all.
	Progress func(done, total int64)
}

// ImportSummary is what an import did (import --json).
type ImportSummary struct {
	Address  string `json:"address"`
	Source   string `json:"source"`
	Format   string `json:"format"` // "mbox" or "maildir"
	Imported int    `json:"imported"`
	Skipped  int    `json:"skipped"`
	Failed   int    `json:"failed"`
	// SkippedReasons counts the skipped messages by reason.
	SkippedReasons map[string]int `json:"skipped_reasons,omitempty"`
	// Failures are the failed messages with their reasons (the first
	// 1000; FailuresOmitted counts the others).
	Failures        []ImportFailure `json:"failures,omitempty"`
	FailuresOmitted int             `json:"failures_omitted,omitempty"`
	// ResumedAt is the mbox offset this run began at (after an earlier
	// run got there), 0 from the start.
	ResumedAt int64   `json:"resumed_at,omitempty"`
	Bytes     int64   `json:"bytes"` // of the source read in this run
	Seconds   float64 `json:"seconds"`
}

// ImportFailure is one message that was not imported.
type ImportFailure struct {
	// Message says which: "offset N" of an mbox file (where its From_
	// line begins), or a Maildir file's path under PATH.
	Message string `json:"message"`
	Reason  string `json:"reason"`
}

// maxFailures bounds the failures a summary lists.
const maxFailures = 1000

// Reasons a message is skipped.
const skipImported = "already imported"

func (s *ImportSummary) fail(which, reason string) {
	s.Failed++
	if len(s.Failures) < maxFailures {
		s.Failures = append(s.Failures, ImportFailure{Message: which, Reason: reason})
	} else {
		s.FailuresOmitted++
	}
}

func (s *ImportSummary) skip(reason string) {
	s.Skipped++
	if s.SkippedReasons == nil {
		s.SkippedReasons = map[string]int{}
	}
	s.SkippedReasons[reason]++
}

func (s *ImportSummary) print(w io.Writer) {
	fmt.Fprintf(w, "%s (%s) into %s: imported %d, skipped %d, failed %d (%.1f MiB in %.1fs)\n", safe(s.Source), s.Format,
		s.Address, s.Imported, s.Skipped, s.Failed, float64(s.Bytes)/(1<<20), s.Seconds)
	if s.ResumedAt > 0 {
		fmt.Fprintf(w, "resumed at byte %d, where an earlier run stopped\n", s.ResumedAt)
	}
	reasons := make([]string, 0, len(s.SkippedReasons))
	for r := range s.SkippedReasons {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(w, "skipped %d: %s\n", s.SkippedReasons[r], r)
	}
	for _, f := range s.Failures {
		fmt.Fprintf(w, "failed: %s: %s\n", safe(f.Message), safe(f.Reason))
	}
	if s.FailuresOmitted > 0 {
		fmt.Fprintf(w, "failed: %d more\n", s.FailuresOmitted)
	}
}

// errTooLarge is a message over ImportConfig.MaxSize.
var errTooLarge = errors.New("larger than --max-size")

// limitReader fails (errTooLarge) after n bytes.
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		var one [1]byte
		if k, _ := l.r.Read(one[:]); k > 0 {
			return 0, errTooLarge
		}
		return l.r.Read(p)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// ImportMail imports the messages of cfg.Path (an mbox file or a Maildir)
// into the mailbox of cfg.Address, through the mailbox service. It
// returns the summary also with an error that stopped the import (the
// context's, a store's, reading an mbox file); the failures of single
// messages are in the summary only. Memory stays constant whatever the
// size of the file or of its messages. `pullmail bench` may call it.
func ImportMail(ctx context.Context, cfg ImportConfig) (ImportSummary, error) {
	start := time.Now()
	st, err := os.Stat(cfg.Path)
	if err != nil {
		return ImportSummary{}, err
	}
	sum := ImportSummary{Address: cfg.Address, Source: cfg.Path}
	im := &importer{cfg: cfg, sum: &sum}
	if st.IsDir() {
		sum.Format = "maildir"
		err = im.maildir(ctx)
	} else {
		sum.Format = "mbox"
		err = im.mbox(ctx, st.Size())
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum, err
}

type importer struct {
	cfg ImportConfig
	sum *ImportSummary
}

// outcome is what became of one message.
type outcome int

const (
	imported outcome = iota
	skipped
	failed
	failedTemporary // may succeed when run again
)

// one converts and stores one message; flags come from the file (Maildir)
// or, when fromHeader, from the message's Status and X-Status. The error
// is what stops the import (the context, the stores); a message's own
// failure is the reason returned with failed.
func (im *importer) one(ctx context.Context, r io.Reader, flags mailfile.Flags, fromHeader bool) (outcome, string, error) {
	mbx := im.cfg.Mailbox
	epoch, err := mbx.CollectorEpoch(ctx)
	if err != nil {
		return 0, "", fmt.Errorf("reading the collector's epoch: %w", err)
	}
	var src io.Reader = r
	if im.cfg.MaxSize > 0 {
		src = &limitReader{r: r, n: im.cfg.MaxSize}
	}
	res, err := mimeconv.Convert(ctx, src, im.cfg.Resources, mimeconv.Options{TempDir: im.cfg.TempDir})
	switch {
	case errors.Is(err, errTooLarge):
		return failed, fmt.Sprintf("larger than --max-size (%d bytes)", im.cfg.MaxSize), nil
	case err != nil && ctx.Err() != nil:
		return 0, "", ctx.Err()
	case err != nil && errors.Is(err, errSourceRead):
		return failed, err.Error(), nil
	case err != nil:
		return 0, "", err
	}
	if fromHeader {
		h := res.Message.Header
		flags = mailfile.ParseStatus(h.Get("Status").String(), h.Get("X-Status").String())
	}
	rec, err := json.Marshal(res.Record)
	if err != nil {
		return 0, "", err
	}
	recInfo, err := im.cfg.Resources.Put(ctx, bytes.NewReader(rec), resource.PutOptions{Size: int64(len(rec))})
	if err != nil {
		return 0, "", fmt.Errorf("storing a record: %w", err)
	}
	receipt, err := mbx.Import(ctx, mailbox.ImportDelivery{Address: im.cfg.Address, Message: res.Message,
		Resources: append(res.Resources, recInfo), Record: recInfo.ID, Digest: res.Record.SHA256, Epoch: epoch,
		Seen: flags.Seen, Trash: flags.Trashed})
	switch {
	case err == nil && receipt.Repeated:
		return skipped, skipImported, nil
	case err == nil:
		return imported, "", nil
	case errs.KindOf(err) == errs.Invalid:
		return failed, "refused by the mailbox: " + err.Error(), nil
	case errs.KindOf(err) == errs.Temporary:
		return failedTemporary, "not stored (" + err.Error() + "); run the import again", nil
	}
	return 0, "", err
}

// errSourceRead marks a read error of a Maildir file (the message's own).
var errSourceRead = errors.New("reading the file")

type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: %v", errSourceRead, err)
	}
	return n, err
}

// mboxJournal is where an mbox import got to: the offset of the next
// message (every one before it imported, skipped or failed for good), and
// the SHA-256 of the file's bytes before it, which must match for a run
// again to carry on there.
type mboxJournal struct {
	Path   string    `json:"path"`
	Offset int64     `json:"offset"`
	Prefix string    `json:"prefix_sha256"` // hex
	Saved  time.Time `json:"saved"`
}

func (im *importer) journalPath() string {
	abs, err := filepath.Abs(im.cfg.Path)
	if err != nil {
		abs = im.cfg.Path
	}
	k := sha256.Sum256([]byte(im.cfg.Address + "\x00" + abs))
	return filepath.Join(im.cfg.JournalDir, hex.EncodeToString(k[:16])+".json")
}

// resume reads the journal and, if it holds for f, returns the offset to
// carry on at, the hash of the bytes before it continued from it.
func (im *importer) resume(f *os.File, size int64) (int64, hash.Hash, error) {
	h := sha256.New()
	if im.cfg.JournalDir == "" {
		return 0, h, nil
	}
	b, err := os.ReadFile(im.journalPath())
	if errors.Is(err, os.ErrNotExist) {
		return 0, h, nil
	} else if err != nil {
		return 0, nil, err
	}
	var j mboxJournal
	if json.Unmarshal(b, &j) != nil || j.Offset <= 0 || j.Offset > size {
		return 0, h, nil
	}
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, j.Offset)); err != nil {
		return 0, nil, fmt.Errorf("reading %s: %w", im.cfg.Path, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != j.Prefix {
		return 0, sha256.New(), nil // changed: from the start (the digests keep it once)
	}
	if _, err := f.Seek(j.Offset, io.SeekStart); err != nil {
		return 0, nil, err
	}
	return j.Offset, h, nil
}

func (im *importer) saveJournal(off int64, prefix []byte) error {
	if im.cfg.JournalDir == "" {
		return nil
	}
	if err := os.MkdirAll(im.cfg.JournalDir, 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(mboxJournal{Path: im.cfg.Path, Offset: off, Prefix: hex.EncodeToString(prefix), Saved: time.Now().UTC()})
	return atomicfile.Replace(im.journalPath(), b, 0o600)
}

// journalEvery is how often an mbox import saves its journal: a message
// imported after the last save and before a crash is found again by its
// digest, so the journal need not be written for each.
const journalEvery = time.Second

func (im *importer) mbox(ctx context.Context, size int64) error {
	f, err := os.Open(im.cfg.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	off, h, err := im.resume(f, size)
	if err != nil {
		return err
	}
	im.sum.ResumedAt = off
	r := mailfile.NewMboxReader(f, im.cfg.Variant, off)
	r.Tee = h
	last, advance := time.Now(), true
	// The checkpoint: the offset after the last message done, and the
	// digest of the bytes before it (Next feeds h the next From_ line).
	done, prefix := off, h.Sum(nil)
	save := func() error {
		if !advance {
			return nil
		}
		last = time.Now()
		return im.saveJournal(done, prefix)
	}
	for {
		m, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, mailfile.ErrNotMbox) {
			return fmt.Errorf("%s: %w", im.cfg.Path, err)
		}
		if err != nil {
			_ = save()
			return err
		}
		o, reason, err := im.one(ctx, m, mailfile.Flags{}, true)
		if err != nil {
			_ = save()
			return err
		}
		if _, err := io.Copy(io.Discard, m); err != nil { // the rest of a message that failed
			_ = save()
			return err
		}
		im.count(o, reason, fmt.Sprintf("offset %d", m.Offset))
		advance = advance && o != failedTemporary
		im.sum.Bytes += m.End() - m.Offset
		if advance {
			done, prefix = m.End(), h.Sum(prefix[:0])
		}
		if im.cfg.Progress != nil {
			im.cfg.Progress(m.End(), size)
		}
		if time.Since(last) >= journalEvery {
			if err := save(); err != nil {
				return fmt.Errorf("saving the import's journal: %w", err)
			}
		}
	}
	if err := save(); err != nil {
		return fmt.Errorf("saving the import's journal: %w", err)
	}
	return nil
}

func (im *importer) count(o outcome, reason, which string) {
	switch o {
	case imported:
		im.sum.Imported++
	case skipped:
		im.sum.skip(reason)
	default:
		im.sum.fail(which, reason)
	}
}

func (im *importer) maildir(ctx context.Context) error {
	ents, err := mailfile.ReadMaildir(im.cfg.Path)
	if err != nil {
		return err
	}
	var total, done int64
	for _, e := range ents {
		if st, err := os.Lstat(e.Path); err == nil {
			total += st.Size()
		}
	}
	for _, e := range ents {
		which := filepath.Join(e.Sub, e.Name)
		n, o, reason, err := im.maildirOne(ctx, e)
		if err != nil {
			return err
		}
		im.count(o, reason, which)
		im.sum.Bytes += n
		done += n
		if im.cfg.Progress != nil {
			im.cfg.Progress(done, total)
		}
	}
	return nil
}

// maildirOne imports one Maildir file: its digest first (a file imported
// before is skipped without converting it), then the conversion.
func (im *importer) maildirOne(ctx context.Context, e mailfile.MaildirEntry) (int64, outcome, string, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, "", err
	}
	f, err := os.Open(e.Path)
	if err != nil {
		return 0, failed, "opening the file: " + err.Error(), nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, failed, "reading the file: " + err.Error(), nil
	}
	if !st.Mode().IsRegular() {
		return 0, failed, "not a regular file", nil
	}
	if im.cfg.MaxSize > 0 && st.Size() > im.cfg.MaxSize {
		return st.Size(), failed, fmt.Sprintf("larger than --max-size (%d bytes)", im.cfg.MaxSize), nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return 0, failed, "reading the file: " + err.Error(), nil
	}
	digest := base64.RawURLEncoding.EncodeToString(h.Sum(nil))
	if _, ok, err := im.cfg.Mailbox.Imported(ctx, im.cfg.Address, digest); err != nil {
		return 0, 0, "", err
	} else if ok {
		return st.Size(), skipped, skipImported, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, failed, "reading the file: " + err.Error(), nil
	}
	o, reason, err := im.one(ctx, sourceReader{f}, e.Flags, false)
	return st.Size(), o, reason, err
}
