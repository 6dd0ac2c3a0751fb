package cli

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/schollz/progressbar/v3"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// newClient builds the API client from PULLMAIL_SERVER, PULLMAIL_TOKEN and
// PULLMAIL_CA; without PULLMAIL_TOKEN, from what 'pullmail login' stored.
func newClient(ctx context.Context, env *Env) (*client.Client, error) {
	base := env.Getenv("PULLMAIL_SERVER")
	if base == "" {
		return nil, errors.New("PULLMAIL_SERVER is not set: export PULLMAIL_SERVER=https://host:port")
	}
	tok := env.Getenv("PULLMAIL_TOKEN")
	if tok == "" {
		return loginClient(ctx, env, base)
	}
	return client.New(base, tok, env.Getenv("PULLMAIL_CA"))
}

// progressThreshold is the size from which transfers show a progress bar
// (when stderr is a terminal).
const progressThreshold = 4 << 20

// withProgress wraps r in a progress bar on stderr when stderr is a terminal
// and the transfer is large; done must be called when the transfer ends.
func withProgress(env *Env, r io.Reader, size int64, label string) (io.Reader, func()) {
	if size < progressThreshold || !env.IsTerminal(env.Stderr) {
		return r, func() {}
	}
	bar := progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(env.Stderr),
		progressbar.OptionSetDescription(label),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	pr := progressbar.NewReader(r, bar)
	return &pr, func() { bar.Finish() }
}

// uploadFile streams a file to the server, hashing it on the way, and checks
// that the server's Content-ID is the file's SHA-256.
func uploadFile(ctx context.Context, env *Env, api mailbox.API, path string) (mailbox.Upload, error) {
	f, err := os.Open(path)
	if err != nil {
		return mailbox.Upload{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return mailbox.Upload{}, err
	}
	if !st.Mode().IsRegular() {
		return mailbox.Upload{}, fmt.Errorf("%s is not a regular file", path)
	}
	h := sha256.New()
	r, done := withProgress(env, io.TeeReader(f, h), st.Size(), filepath.Base(path))
	up, err := api.Upload(ctx, r, mailbox.UploadOptions{Size: st.Size()})
	done()
	if err != nil {
		return up, fmt.Errorf("uploading %s: %w", path, err)
	}
	if want := resource.IDFromSum(h.Sum(nil)); up.ContentID != want {
		return up, fmt.Errorf("uploading %s: the server answered Content-ID %s, the file's is %s", path, up.ContentID, want)
	}
	return up, nil
}

// fileType guesses a file's media type from its extension, then its first
// bytes.
func fileType(path string) string {
	if t := mime.TypeByExtension(filepath.Ext(path)); t != "" {
		return t
	}
	f, err := os.Open(path)
	if err != nil {
		return "application/octet-stream"
	}
	defer f.Close()
	var b [512]byte
	n, _ := io.ReadFull(f, b[:])
	return http.DetectContentType(b[:n])
}

// SendOptions is what 'pullmail send' sends.
type SendOptions struct {
	To, Cc, Bcc []string
	Subject     string
	Text        string
	HTMLFile    string
	Attach      []string
	InReplyTo   string
}

// Send composes a message (uploading its bodies and attachments), saves it as
// a draft and sends it. It returns the sent message.
func Send(ctx context.Context, env *Env, api mailbox.API, o SendOptions) (mailbox.Message, error) {
	var bodies []placeholder.Part
	if o.Text != "" || o.HTMLFile == "" {
		up, err := api.Upload(ctx, strings.NewReader(o.Text), mailbox.UploadOptions{Size: int64(len(o.Text))})
		if err != nil {
			return mailbox.Message{}, fmt.Errorf("uploading the text: %w", err)
		}
		p, err := placeholder.NewLeaf(up.ContentID, up.Size, "text/plain; charset=UTF-8", "inline", "")
		if err != nil {
			return mailbox.Message{}, err
		}
		bodies = append(bodies, p)
	}
	if o.HTMLFile != "" {
		up, err := uploadFile(ctx, env, api, o.HTMLFile)
		if err != nil {
			return mailbox.Message{}, err
		}
		p, err := placeholder.NewLeaf(up.ContentID, up.Size, "text/html; charset=UTF-8", "inline", "")
		if err != nil {
			return mailbox.Message{}, err
		}
		bodies = append(bodies, p)
	}
	me, err := api.Me(ctx)
	if err != nil {
		return mailbox.Message{}, err
	}
	m := placeholder.New(me.Address, o.To, o.Cc, o.Bcc, o.Subject)
	if o.InReplyTo != "" {
		m.Header.SetString(placeholder.HInReplyTo, o.InReplyTo)
	}
	m.Parts = append(m.Parts, placeholder.Alternative(bodies...))
	return attachAndSend(ctx, env, api, m, o.Attach, uploadFile)
}

// attachAndSend adds an attachment leaf per file to m, whose bytes upload
// puts in (or finds in) the user's mailbox, then saves m as a draft and
// sends it (sendDraft: retried, sent once).
func attachAndSend(ctx context.Context, env *Env, api mailbox.API, m *placeholder.Message, paths []string,
	upload func(context.Context, *Env, mailbox.API, string) (mailbox.Upload, error)) (mailbox.Message, error) {
	for _, path := range paths {
		up, err := upload(ctx, env, api, path)
		if err != nil {
			return mailbox.Message{}, err
		}
		p, err := placeholder.NewLeaf(up.ContentID, up.Size, fileType(path), "attachment", filepath.Base(path))
		if err != nil {
			return mailbox.Message{}, err
		}
		m.Parts = append(m.Parts, p)
	}
	d, err := api.CreateDraft(ctx, m.Canonical())
	if err != nil {
		return mailbox.Message{}, fmt.Errorf("saving the draft: %w", err)
	}
	return sendDraft(ctx, env, api, d.ID, sendRetry)
}

// retryPolicy says how often and how patiently sendDraft tries.
type retryPolicy struct {
	attempts int
	backoff  time.Duration // before the second attempt; doubled each time
}

// sendRetry: four attempts over about 3.5 seconds.
var sendRetry = retryPolicy{attempts: 4, backoff: 500 * time.Millisecond}

// sendDraft sends the draft id under one new Idempotency-Key, repeating
// the request (same key) after a network error or a 5xx answer: the
// server sends at most once and answers a repeat of a send that went
// through with the same sent message (docs/PROTOCOL.md §8.9). When the
// send finally fails, the draft is deleted, so that running the command
// again leaves no stray draft; unless the message turns out to have been
// sent after all (a server without idempotency keys answers a repeat with
// not_a_draft), which is success. (One case stays open: a last attempt
// whose answer was lost while the server still works on it may commit
// after the check; the server's own deadline makes that rare.)
func sendDraft(ctx context.Context, env *Env, api mailbox.API, id string, rp retryPolicy) (mailbox.Message, error) {
	kctx := mailbox.WithIdempotencyKey(ctx, newIdempotencyKey())
	var err error
	wait := rp.backoff
	for attempt := 1; ; attempt++ {
		var sent mailbox.Message
		if sent, err = api.Send(kctx, id); err == nil {
			return sent, nil
		}
		if !retryable(err) || attempt >= rp.attempts || sleep(ctx, wait) != nil {
			break
		}
		wait *= 2
	}
	// Clean up even when ctx was cancelled (Ctrl-C), briefly.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	m, gerr := api.Get(cctx, id)
	switch {
	case gerr == nil && m.Folder == "sent":
		return m, nil
	case gerr == nil && m.Folder == "drafts":
		if derr := api.Purge(cctx, id); derr != nil {
			fmt.Fprintf(env.Stderr, "pullmail: the draft %s was not sent and is kept: deleting it failed: %s\n", id, oneLine(derr))
		}
	case gerr != nil && !errs.Is(gerr, errs.NotFound):
		fmt.Fprintf(env.Stderr, "pullmail: the draft %s may not have been sent and may be kept: %s\n", id, oneLine(gerr))
	}
	return mailbox.Message{}, err
}

// retryable reports whether a failed send may have failed on the way
// (network, 5xx): with its Idempotency-Key, trying again is safe.
func retryable(err error) bool {
	switch errs.KindOf(err) {
	case errs.Temporary, errs.Internal:
		return true
	}
	return false
}

// sleep waits d or until ctx ends (then its error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newIdempotencyKey returns a fresh key: 128 random bits, base64url.
func newIdempotencyKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// resolve finds the message a command line names: an opaque id, or a
// Message-ID (with or without angle brackets), preferring the inbox copy
// when the user has several.
func resolve(ctx context.Context, api mailbox.API, ref string) (mailbox.Message, error) {
	return resolveIn(ctx, api, ref, "")
}

// folderRank orders a user's copies of one Message-ID for resolve: the
// copy a person most likely means first, trash last.
var folderRank = map[string]int{"inbox": 0, "archive": 1, "requests": 2, "junk": 3, "sent": 4, "drafts": 5, "trash": 6}

// resolveIn is resolve preferring the copy in folder prefer, when there is
// one (delete --purge means the trash copy).
func resolveIn(ctx context.Context, api mailbox.API, ref, prefer string) (mailbox.Message, error) {
	if !strings.Contains(ref, "@") {
		return api.Get(ctx, ref)
	}
	ms, err := api.Lookup(ctx, ref)
	if err != nil {
		return mailbox.Message{}, err
	}
	if len(ms) == 0 {
		return mailbox.Message{}, errs.E(errs.NotFound, "not_found", "no message %s", ref)
	}
	rank := func(m mailbox.Message) int {
		if m.Folder == prefer {
			return -1
		}
		if r, ok := folderRank[m.Folder]; ok {
			return r
		}
		return len(folderRank)
	}
	best := ms[0]
	for _, m := range ms[1:] {
		if rank(m) < rank(best) {
			best = m
		}
	}
	return api.Get(ctx, best.ID)
}

// readText downloads a small inline body.
func readText(ctx context.Context, api mailbox.API, m mailbox.Message, a *mailbox.Attachment) (string, error) {
	if a == nil {
		return "", nil
	}
	rc, _, err := api.Download(ctx, m.ID, a.ContentID)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 16<<20))
	return string(b), err
}

func init() {
	register(&command{
		name: "send", args: "--to A[,B] [--cc ...] [--bcc ...] --subject S [--text T] [--html FILE] [--attach FILE]...",
		short: "send a message",
		long: `Uploads the text, the HTML body and each attachment (any size, streamed, with a progress bar
on a terminal), then sends the message and prints its Message-ID on standard output.
Addresses may be repeated flags or comma-separated.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			var o SendOptions
			var to, cc, bcc listFlag
			var attach pathFlag
			fs.Var(&to, "to", "recipient `ADDRESS`es")
			fs.Var(&cc, "cc", "carbon-copy `ADDRESS`es")
			fs.Var(&bcc, "bcc", "blind carbon-copy `ADDRESS`es (hidden from the others)")
			fs.StringVar(&o.Subject, "subject", "", "the subject")
			fs.StringVar(&o.Text, "text", "", "the text body")
			fs.StringVar(&o.HTMLFile, "html", "", "an HTML body `FILE`")
			fs.Var(&attach, "attach", "attach a `FILE` (repeatable)")
			fs.StringVar(&o.InReplyTo, "in-reply-to", "", "the Message-ID this answers")
			asJSON := fs.Bool("json", false, "print the sent message as JSON")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 0 {
					return usagef("unexpected arguments: %s", strings.Join(args, " "))
				}
				if len(to)+len(cc)+len(bcc) == 0 {
					return usagef("no recipients: give --to, --cc or --bcc")
				}
				o.To, o.Cc, o.Bcc, o.Attach = to, cc, bcc, attach
				api, err := newClient(ctx, env)
				if err != nil {
					return err
				}
				m, err := Send(ctx, env, api, o)
				if err != nil {
					return err
				}
				if *asJSON {
					return printJSON(env, m)
				}
				fmt.Fprintln(env.Stdout, m.MessageID)
				return nil
			}
		},
	})
	register(&command{
		name: "list", args: "[--folder NAME] [--limit N] [--json]",
		short: "list a folder, newest first",
		long: `Lists a folder, newest first. --json prints an array of message objects with message_id,
from, to, subject, date, status and attachments (filename, content_id, size), among others.
The folders are inbox, drafts, sent, archive, requests, junk and trash (deleted messages,
kept 30 days: see 'pullmail delete'), and your own ('pullmail folder list').`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			folder := fs.String("folder", "inbox", "the folder `NAME`: inbox, drafts, sent, archive, requests, junk, trash or one of yours")
			limit := fs.Int("limit", 0, "at most `N` messages (0: the server's default)")
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 0 {
					return usagef("unexpected arguments: %s", strings.Join(args, " "))
				}
				api, err := newClient(ctx, env)
				if err != nil {
					return err
				}
				l, err := api.List(ctx, mailbox.ListOptions{Folder: *folder, Limit: *limit})
				if err != nil {
					return err
				}
				if *asJSON {
					return printJSON(env, l.Messages)
				}
				tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "DATE\tFROM\tSUBJECT\tSTATUS\tATTACHMENTS\tMESSAGE-ID")
				for _, m := range l.Messages {
					date := "-"
					if m.Date != nil {
						date = m.Date.Local().Format("2006-01-02 15:04")
					}
					who := m.From
					if *folder == "sent" || *folder == "drafts" {
						who = "to " + strings.Join(m.To, ", ")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", date, clip(safe(who), 30), clip(safe(m.Subject), 40), safe(m.Status), len(m.Attachments), safe(m.MessageID))
				}
				return tw.Flush()
			}
		},
	})
	register(&command{
		name: "move", args: "MESSAGE-ID FOLDER [--json]",
		short: "move a message to another folder",
		long: `Moves a message to FOLDER: inbox, archive, requests, junk, a folder of yours ('pullmail
folder add') or trash (the same as 'pullmail delete'). Nothing moves into drafts or sent, and a
draft moves only to trash.
MESSAGE-ID is the Message-ID (angle brackets optional) or the message's id from 'list --json'.
--json prints the moved message.

  pullmail move '<0b8e1c5e-...@a.test>' archive`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			asJSON := fs.Bool("json", false, "print the moved message as JSON")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 2 {
					return usagef("want MESSAGE-ID FOLDER")
				}
				api, err := newClient(ctx, env)
				if err != nil {
					return err
				}
				m, err := resolve(ctx, api, args[0])
				if err != nil {
					return err
				}
				moved, err := api.Move(ctx, m.ID, args[1])
				if err != nil {
					return err
				}
				if *asJSON {
					return printJSON(env, moved)
				}
				fmt.Fprintf(env.Stdout, "moved %s to %s\n", safe(moved.MessageID), safe(moved.Folder))
				return nil
			}
		},
	})
	register(&command{
		name: "delete", args: "MESSAGE-ID [--purge] [--json]",
		short: "move a message to trash, or purge it from trash",
		long: `Moves a message to trash, where it stays 30 days and can be moved back
('pullmail restore MESSAGE-ID', or Undo in the webmail). With --purge, removes a
message that is in trash (or a draft) for good; its attachments are then freed unless
another message names them. MESSAGE-ID is the Message-ID (angle brackets optional) or the
message's id from 'list --json'. --json prints {"id", "message_id", "folder", "purged"}:
the folder the message is in now (trash), or "" with purged true.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			purge := fs.Bool("purge", false, "remove the message from trash for good")
			asJSON := fs.Bool("json", false, "print the result as JSON")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one MESSAGE-ID")
				}
				api, err := newClient(ctx, env)
				if err != nil {
					return err
				}
				prefer := ""
				if *purge {
					prefer = "trash"
				}
				m, err := resolveIn(ctx, api, args[0], prefer)
				if err != nil {
					return err
				}
				out := struct {
					ID        string `json:"id"`
					MessageID string `json:"message_id"`
					Folder    string `json:"folder"`
					Purged    bool   `json:"purged"`
				}{ID: m.ID, MessageID: m.MessageID}
				if *purge {
					err, out.Purged = api.Purge(ctx, m.ID), true
				} else {
					err, out.Folder = api.Delete(ctx, m.ID), "trash"
				}
				if err != nil {
					return err
				}
				if *asJSON {
					return printJSON(env, out)
				}
				if *purge {
					fmt.Fprintf(env.Stdout, "purged %s\n", safe(m.MessageID))
				} else {
					fmt.Fprintf(env.Stdout, "moved %s to trash (kept 30 days; --purge removes it now)\n", safe(m.MessageID))
				}
				return nil
			}
		},
	})
	register(&command{
		name: "show", args: "MESSAGE-ID [--json]",
		short: "show a message's headers and text",
		long: `Shows a message: its headers, its attachments and its text body; for a message you sent,
a Delivery line per recipient (queued, deferred, delivered or failed, with the last answer).
MESSAGE-ID is the Message-ID (angle brackets optional) or the message's id from 'list --json'.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			asJSON := fs.Bool("json", false, "print JSON: the message with its text as \"body\"")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one MESSAGE-ID")
				}
				api, err := newClient(ctx, env)
				if err != nil {
					return err
				}
				m, err := resolve(ctx, api, args[0])
				if err != nil {
					return err
				}
				body, err := readText(ctx, api, m, m.Text)
				if err != nil {
					return fmt.Errorf("reading the text: %w", err)
				}
				if *asJSON {
					return printJSON(env, struct {
						mailbox.Message
						Body string `json:"body"`
					}{m, body})
				}
				w := env.Stdout
				// Everything but the date comes from the message: safe.
				fmt.Fprintf(w, "From: %s\n", safe(m.From))
				fmt.Fprintf(w, "To: %s\n", safeStrings(m.To))
				if len(m.Cc) > 0 {
					fmt.Fprintf(w, "Cc: %s\n", safeStrings(m.Cc))
				}
				if len(m.Bcc) > 0 {
					fmt.Fprintf(w, "Bcc: %s\n", safeStrings(m.Bcc))
				}
				fmt.Fprintf(w, "Subject: %s\n", safe(m.Subject))
				if m.Date != nil {
					fmt.Fprintf(w, "Date: %s\n", m.Date.Local().Format(time.RFC1123Z))
				}
				fmt.Fprintf(w, "Message-ID: %s\n", safe(m.MessageID))
				fmt.Fprintf(w, "Status: %s\n", safe(m.Status))
				for _, d := range m.Deliveries {
					// The reply is the remote exchanger's text: escaped.
					line := safe(d.Recipient) + " " + safe(d.State)
					if d.Via != "" {
						line += " via " + safe(d.Via)
					}
					if d.Reply != "" {
						line += ": " + safe(d.Reply)
					}
					if d.NextRetry != nil {
						line += " (next try " + d.NextRetry.Local().Format(time.RFC1123Z) + ")"
					}
					fmt.Fprintf(w, "Delivery: %s\n", line)
				}
				for _, a := range m.Attachments {
					fmt.Fprintf(w, "Attachment: %s (%s, %d bytes) <%s>\n", safe(a.Filename), safe(a.ContentType), a.Size, a.ContentID)
				}
				body = safeText(body)
				fmt.Fprintf(w, "\n%s", body)
				if body != "" && !strings.HasSuffix(body, "\n") {
					fmt.Fprintln(w)
				}
				return nil
			}
		},
	})
	register(&command{
		name: "get", args: "MESSAGE-ID --out DIR [--json]",
		short: "save a message's attachments, verifying each",
		long: `Downloads every attachment of a message into DIR under its filename (made safe: no
directories, no control characters; a number is added if the name is taken), checking that
each file's SHA-256 is its Content-ID. A file appears only once complete and verified.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			out := fs.String("out", "", "the `DIR`ectory to save into (created if missing)")
			asJSON := fs.Bool("json", false, "print the saved files as JSON")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one MESSAGE-ID")
				}
				if *out == "" {
					return usagef("--out DIR is required")
				}
				api, err := newClient(ctx, env)
				if err != nil {
					return err
				}
				m, err := resolve(ctx, api, args[0])
				if err != nil {
					return err
				}
				if err := os.MkdirAll(*out, 0o755); err != nil {
					return err
				}
				type saved struct {
					Path      string      `json:"path"`
					ContentID resource.ID `json:"content_id"`
					Size      int64       `json:"size"`
				}
				var files []saved
				for _, a := range m.Attachments {
					path, err := saveAttachment(ctx, env, api, m, a, *out)
					if err != nil {
						return err
					}
					files = append(files, saved{path, a.ContentID, a.Size})
				}
				if *asJSON {
					if files == nil {
						files = []saved{}
					}
					return printJSON(env, files)
				}
				for _, f := range files {
					fmt.Fprintln(env.Stdout, safe(f.Path))
				}
				return nil
			}
		},
	})
}

// saveAttachment downloads one attachment into dir: into a temporary file
// first, hashing on the way; only a verified, synced file is renamed into
// place.
func saveAttachment(ctx context.Context, env *Env, api mailbox.API, m mailbox.Message, a mailbox.Attachment, dir string) (string, error) {
	rc, _, err := api.Download(ctx, m.ID, a.ContentID)
	if err != nil {
		return "", fmt.Errorf("downloading %s: %w", safe(a.Filename), err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(dir, ".pullmail-*.part")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	h := sha256.New()
	r, done := withProgress(env, rc, a.Size, SafeFilename(a.Filename, a.ContentID))
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	done()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("downloading %s: %w", safe(a.Filename), err)
	}
	if got := resource.IDFromSum(h.Sum(nil)); got != a.ContentID || n != a.Size {
		return "", fmt.Errorf("downloading %s: the bytes do not match Content-ID %s (got %s, %d bytes)", safe(a.Filename), a.ContentID, got, n)
	}
	path, err := freeName(dir, SafeFilename(a.Filename, a.ContentID))
	if err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

// SafeFilename makes a sender's filename safe to create in a directory: the
// last path element only, no control, bidi-control (see safe) or path
// characters, no leading dots, at most 200 bytes; the Content-ID when
// nothing is left.
func SafeFilename(name string, cid resource.ID) string {
	name = strings.ReplaceAll(name, "\\", "/")
	name = name[strings.LastIndex(name, "/")+1:]
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unsafeRune(r) || r == ':' || r == '/' || r == unicode.ReplacementChar {
			return '_'
		}
		return r
	}, name)
	name = strings.TrimLeft(strings.TrimSpace(name), ".")
	for len(name) > 200 {
		_, size := lastRune(name)
		name = name[:len(name)-size]
	}
	if name == "" {
		return string(cid)
	}
	return name
}

func lastRune(s string) (rune, int) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i]&0xC0 != 0x80 {
			return rune(s[i]), len(s) - i
		}
	}
	return 0, 1
}

// freeName returns dir/name, or dir/"base (N).ext" for the first N free.
func freeName(dir, name string) (string, error) {
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for i := 0; i < 10000; i++ {
		cand := name
		if i > 0 {
			cand = fmt.Sprintf("%s (%d)%s", base, i, ext)
		}
		p := filepath.Join(dir, cand)
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
	}
	return "", fmt.Errorf("no free file name for %s in %s", name, dir)
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
