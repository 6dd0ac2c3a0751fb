package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/mailfile"
	"github.com/pullmail/pullmail/meta"
)

// ExportSummary is what an export did (export --data --json).
type ExportSummary struct {
	Address  string `json:"address"`
	Out      string `json:"out"`
	Format   string `json:"format"` // "mbox" or "maildir"
	Exported int    `json:"exported"`
	// Left are the messages left out, with the reason (still fetching,
	// fetch failed).
	Left    []ExportLeft `json:"left_out,omitempty"`
	Bytes   int64        `json:"bytes"`
	Seconds float64      `json:"seconds"`
}

// ExportLeft is a message not exported.
type ExportLeft struct {
	ID        string `json:"id"`
	MessageID string `json:"message_id,omitempty"`
	Reason    string `json:"reason"`
}

func exportMailbox(ctx context.Context, env *Env, data *dataFlags, format, address, out string, asJSON bool) error {
	b, addr, domain, err := openMailbox(ctx, data, address)
	if err != nil {
		return err
	}
	defer b.Close()
	u, err := b.Meta.UserByAddress(ctx, addr)
	if err != nil {
		return err
	}
	mbx := mailbox.New(mailbox.Config{Domain: domain, Meta: b.Meta, Resources: b.Resources})
	ctx = auth.WithPrincipal(ctx, auth.Principal{UserID: u.ID, Address: addr})
	sum, err := ExportMail(ctx, mbx, format, out)
	sum.Address = addr
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(env, sum)
	}
	fmt.Fprintf(env.Stdout, "%s: exported %d message(s) of %s (%s, %.1f MiB in %.1fs)\n", safe(out), sum.Exported, addr,
		format, float64(sum.Bytes)/(1<<20), sum.Seconds)
	for _, l := range sum.Left {
		fmt.Fprintf(env.Stdout, "left out: %s %s: %s\n", l.ID, safe(l.MessageID), l.Reason)
	}
	return nil
}

// exportItem is one message to write: what the export needs of its
// summary, so that the list of a large mailbox stays small.
type exportItem struct {
	id, messageID, from, folder string
	status, statusReason        string
	seen                        bool
	date, created               time.Time
}

// exportList lists every message of the principal, of every folder, oldest
// first (by date, then creation).
func exportList(ctx context.Context, mbx *mailbox.Service) ([]exportItem, error) {
	fl, err := mbx.Folders(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing the folders: %w", err)
	}
	var items []exportItem
	for _, f := range fl.Folders {
		page := ""
		for {
			l, err := mbx.List(ctx, mailbox.ListOptions{Folder: f.Name, Page: page})
			if err != nil {
				return nil, fmt.Errorf("listing %s: %w", f.Name, err)
			}
			for _, m := range l.Messages {
				it := exportItem{id: m.ID, messageID: m.MessageID, from: m.From, folder: f.Name, status: m.Status,
					statusReason: m.StatusReason, seen: m.Seen, date: m.Created, created: m.Created}
				if m.Date != nil {
					it.date = *m.Date
				}
				items = append(items, it)
			}
			if l.NextPage == "" {
				break
			}
			page = l.NextPage
		}
	}
	slices.SortStableFunc(items, func(a, b exportItem) int {
		if c := a.date.Compare(b.date); c != 0 {
			return c
		}
		return a.created.Compare(b.created)
	})
	return items, nil
}

// ExportMail writes every message of the principal in ctx to out, as an
// mbox file or a new Maildir (format "mbox" or "maildir"), through the
// mailbox service's Raw (the bytes GET …/raw gives), so that mail that came
// in by SMTP or import comes out byte for byte. out appears complete or not
// at all.
func ExportMail(ctx context.Context, mbx *mailbox.Service, format, out string) (ExportSummary, error) {
	start := time.Now()
	sum := ExportSummary{Out: out, Format: format}
	items, err := exportList(ctx, mbx)
	if err != nil {
		return sum, err
	}
	switch format {
	case "mbox":
		err = exportMbox(ctx, mbx, items, out, &sum)
	case "maildir":
		err = exportMaildir(ctx, mbx, items, out, &sum)
	default:
		err = fmt.Errorf("unknown export format %q (mbox or maildir)", format)
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum, err
}

// openRaw opens a message's bytes, or says why it is left out.
func openRaw(ctx context.Context, mbx *mailbox.Service, it exportItem, sum *ExportSummary) (io.ReadCloser, error) {
	switch meta.Status(it.status) {
	case meta.StatusFetching:
		sum.Left = append(sum.Left, ExportLeft{ID: it.id, MessageID: it.messageID, Reason: "its resources are still being fetched"})
		return nil, nil
	case meta.StatusFailed:
		sum.Left = append(sum.Left, ExportLeft{ID: it.id, MessageID: it.messageID, Reason: "its resources could not be fetched: " + it.statusReason})
		return nil, nil
	}
	rc, err := mbx.Raw(ctx, it.id)
	if err != nil {
		return nil, fmt.Errorf("message %s: %w", it.id, err)
	}
	return rc, nil
}

// sender is the envelope sender of a From_ line: the From address.
func sender(from string) string {
	if a, err := mail.ParseAddress(from); err == nil {
		return a.Address
	}
	return ""
}

func exportMbox(ctx context.Context, mbx *mailbox.Service, items []exportItem, out string, sum *ExportSummary) error {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".pullmail-export-*.part")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	defer tmp.Close()
	cw := &countingWriter{w: tmp}
	w := mailfile.NewMboxWriter(cw)
	for _, it := range items {
		rc, err := openRaw(ctx, mbx, it, sum)
		if err != nil {
			return err
		}
		if rc == nil {
			continue
		}
		mw, err := w.Message(mailfile.FromLine(sender(it.from), it.date))
		if err == nil {
			_, err = io.Copy(mw, rc)
		}
		rc.Close()
		if err == nil {
			err = mw.Close()
		}
		if err != nil {
			return fmt.Errorf("writing message %s: %w", it.id, err)
		}
		sum.Exported++
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	sum.Bytes = cw.n
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return err
	}
	return syncDir(filepath.Dir(out))
}

func exportMaildir(ctx context.Context, mbx *mailbox.Service, items []exportItem, out string, sum *ExportSummary) error {
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("%s exists: a Maildir export makes a new directory", out)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".pullmail-export-*.part")
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if !renamed {
			os.RemoveAll(tmp)
		}
	}()
	w, err := mailfile.NewMaildir(tmp)
	if err != nil {
		return err
	}
	for _, it := range items {
		rc, err := openRaw(ctx, mbx, it, sum)
		if err != nil {
			return err
		}
		if rc == nil {
			continue
		}
		flags := mailfile.Flags{Seen: it.seen, Trashed: it.folder == string(meta.Trash), Draft: it.folder == string(meta.Drafts)}
		cr := &countingReader{r: rc}
		_, err = w.Deliver(cr, flags, it.created)
		rc.Close()
		if err != nil {
			return fmt.Errorf("writing message %s: %w", it.id, err)
		}
		sum.Bytes += cr.n
		sum.Exported++
	}
	if err := w.SyncDirs(); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	renamed = true
	return syncDir(filepath.Dir(out))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
