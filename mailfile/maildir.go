package mailfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Flags are a message's state as Maildir names it (and mbox's Status and
// X-Status fields).
type Flags struct {
	Draft, Flagged, Passed, Replied, Seen, Trashed bool
}

// String is the flags as a Maildir info suffix writes them: letters in
// ASCII order.
func (f Flags) String() string {
	var b strings.Builder
	for _, x := range []struct {
		on bool
		c  byte
	}{{f.Draft, 'D'}, {f.Flagged, 'F'}, {f.Passed, 'P'}, {f.Replied, 'R'}, {f.Seen, 'S'}, {f.Trashed, 'T'}} {
		if x.on {
			b.WriteByte(x.c)
		}
	}
	return b.String()
}

// ParseFlags reads Maildir flag letters; letters it does not know (other
// software's, lower case ones) are ignored.
func ParseFlags(s string) Flags {
	var f Flags
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case 'D':
			f.Draft = true
		case 'F':
			f.Flagged = true
		case 'P':
			f.Passed = true
		case 'R':
			f.Replied = true
		case 'S':
			f.Seen = true
		case 'T':
			f.Trashed = true
		}
	}
	return f
}

// SplitName splits a Maildir file name into its unique part and its flags:
// "UNIQUE:2,FLAGS" (info version 2). A name without an info suffix, or with
// one of another version, has no flags.
func SplitName(name string) (unique string, f Flags) {
	i := strings.LastIndexByte(name, ':')
	if i < 0 {
		return name, Flags{}
	}
	info := name[i+1:]
	if !strings.HasPrefix(info, "2,") {
		return name[:i], Flags{}
	}
	return name[:i], ParseFlags(info[2:])
}

// ParseStatus reads mbox's Status and X-Status fields (as mutt, Thunderbird
// and UW IMAP write them): Status R is seen (O, old, says nothing more);
// X-Status A answered, F flagged, T draft, D deleted.
func ParseStatus(status, xstatus string) Flags {
	var f Flags
	f.Seen = strings.ContainsRune(status, 'R')
	f.Replied = strings.ContainsRune(xstatus, 'A')
	f.Flagged = strings.ContainsRune(xstatus, 'F')
	f.Draft = strings.ContainsRune(xstatus, 'T')
	f.Trashed = strings.ContainsRune(xstatus, 'D')
	return f
}

// MaildirEntry is one message file of a Maildir.
type MaildirEntry struct {
	Path  string // the file
	Sub   string // "new" or "cur"
	Name  string // its name in Sub
	Flags Flags  // from the name (a message in new/ has none)
}

// IsMaildir reports whether dir looks like a Maildir: it has cur/ or new/.
func IsMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if st, err := os.Stat(filepath.Join(dir, sub)); err == nil && st.IsDir() {
			return true
		}
	}
	return false
}

// ReadMaildir lists the messages of a Maildir: the files of new/ and cur/
// (not tmp/, where messages are still being written; not dot files), in
// the order of their names (which begin with the delivery time). Only the
// names are held, so a Maildir of any number of messages lists in memory
// proportional to that number only.
func ReadMaildir(dir string) ([]MaildirEntry, error) {
	if !IsMaildir(dir) {
		return nil, fmt.Errorf("mailfile: %s is not a Maildir (no cur/ or new/)", dir)
	}
	var out []MaildirEntry
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("mailfile: reading the Maildir: %w", err)
		}
		for _, e := range ents {
			name := e.Name()
			if strings.HasPrefix(name, ".") {
				continue
			}
			me := MaildirEntry{Path: filepath.Join(dir, sub, name), Sub: sub, Name: name}
			if sub == "cur" {
				_, me.Flags = SplitName(name)
			}
			out = append(out, me)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// MaildirWriter delivers messages into a Maildir.
type MaildirWriter struct {
	dir  string
	tag  string // this writer's part of every unique name
	n    atomic.Int64
	Sync bool // sync each file (and cur/) before Deliver returns; NewMaildir sets it
}

// NewMaildir creates the Maildir dir (and its tmp/, new/, cur/, mode 0700)
// if need be and returns a writer into it.
func NewMaildir(dir string) (*MaildirWriter, error) {
	for _, sub := range []string{"", "tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("mailfile: creating the Maildir: %w", err)
		}
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	if host == "" {
		host = "localhost"
	}
	return &MaildirWriter{dir: dir, tag: fmt.Sprintf("P%dR%s.%s", os.Getpid(), hex.EncodeToString(b[:]), host), Sync: true}, nil
}

// Deliver writes the message r into cur/ with flags f, its name beginning
// with t (the order ReadMaildir lists): first in tmp/, synced, then renamed,
// so a reader of the Maildir never sees a partial message. It returns the
// file's path.
func (w *MaildirWriter) Deliver(r io.Reader, f Flags, t time.Time) (string, error) {
	n := w.n.Add(1)
	unique := fmt.Sprintf("%d.M%06d%sQ%d", t.Unix(), t.Nanosecond()/1000, w.tag, n)
	tmp := filepath.Join(w.dir, "tmp", unique)
	file, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("mailfile: %w", err)
	}
	_, err = io.Copy(file, r)
	if err == nil && w.Sync {
		err = file.Sync()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("mailfile: writing %s: %w", tmp, err)
	}
	dst := filepath.Join(w.dir, "cur", unique+":2,"+f.String())
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("mailfile: %w", err)
	}
	return dst, nil
}

// SyncDirs syncs the Maildir's directories, so that the renames of
// Deliver are durable (once, after the last message).
func (w *MaildirWriter) SyncDirs() error {
	for _, sub := range []string{"cur", "tmp", ""} {
		d, err := os.Open(filepath.Join(w.dir, sub))
		if err != nil {
			return err
		}
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("mailfile: syncing the Maildir: %w", err)
		}
	}
	return nil
}
