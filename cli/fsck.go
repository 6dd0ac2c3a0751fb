package cli

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the driver of PRAGMA integrity_check's own connection

	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/server"
)

func init() {
	register(&command{
		name: "fsck", args: "--data DIR [--repair] [--json] [--key-file F]",
		short: "check every stored resource and the database (and repair with --repair)",
		long: `Checks a data directory, which the server may be using meanwhile:

  - every stored resource is read whole and checked against its Content-ID (and a
    plain store's chunk sums, which are rebuilt when they alone are damaged);
  - the database: SQLite's integrity_check and foreign_key_check (on SQLite);
  - every resource a message names is stored, whole, with the size the message
    says (a message still fetching, or whose pull failed, may lack its resources).

Each problem is printed with the messages that name the resource (--json: one
object with a finding per problem). The exit status is 1 when anything was found,
repaired or not, and 0 when the directory is clean.

With --repair, each damaged resource is removed, and each damaged or missing
resource that a message received from another domain names is pulled again from
that domain: its pull job is queued again and its copies go back to "fetching",
so the server's MTA fetches it as it did on arrival (while the sender's grant
lasts, 5 days from the push; after that the copies end "failed"). A resource
only this domain had (an upload, a message written here) cannot be fetched:
the report says so, and an upload of the same bytes by its owner repairs it.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := addDataFlags(fs)
			repair := fs.Bool("repair", false, "remove damaged resources and pull them again from the domains that have them")
			asJSON := fs.Bool("json", false, "print the report as JSON")
			fs.String("key-file", "", "the at-rest encryption key of an encrypted store (default DIR/keys/resource.key)")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 0 {
					return usagef("unexpected arguments: %s", strings.Join(args, " "))
				}
				rep, err := fsck(ctx, data, *repair)
				if err != nil {
					return err
				}
				if *asJSON {
					if err := printJSON(env, rep); err != nil {
						return err
					}
				} else {
					rep.print(env.Stdout)
				}
				if !rep.Clean {
					return fmt.Errorf("%d problem(s) found in %s", len(rep.Findings), *data.dir)
				}
				return nil
			}
		},
	})
}

// Kinds of fsck findings (the "kind" of --json).
const (
	findDamaged    = "damaged_resource"    // stored bytes that do not match their Content-ID
	findUnreadable = "unreadable_resource" // the store failed to read it (an I/O error)
	findMissing    = "missing_resource"    // a message names it, the store lacks it
	findSize       = "size_mismatch"       // a message names it with another size
	findDatabase   = "database"            // SQLite's integrity or foreign key check
)

// fsckReport is what fsck found; --json prints it as it is.
type fsckReport struct {
	Dir       string        `json:"dir"`
	Resources int           `json:"resources"` // stored resources checked
	Messages  int           `json:"messages"`  // messages whose references were checked
	Findings  []fsckFinding `json:"findings"`
	Clean     bool          `json:"clean"`
}

// fsckFinding is one problem.
type fsckFinding struct {
	Kind     string        `json:"kind"`
	Resource resource.ID   `json:"resource,omitempty"`
	Detail   string        `json:"detail"`
	Messages []fsckMessage `json:"messages,omitempty"` // the messages that name the resource
	Repair   string        `json:"repair,omitempty"`   // what --repair did
}

// fsckMessage names one message copy.
type fsckMessage struct {
	User      string `json:"user"`
	ID        string `json:"id"`
	Folder    string `json:"folder"`
	MessageID string `json:"message_id"`
	Status    string `json:"status"`
}

func (r *fsckReport) print(w io.Writer) {
	fmt.Fprintf(w, "%s: %d resources, %d messages checked\n", r.Dir, r.Resources, r.Messages)
	for _, f := range r.Findings {
		if f.Resource != "" {
			fmt.Fprintf(w, "%s %s: %s\n", f.Kind, f.Resource, f.Detail)
		} else {
			fmt.Fprintf(w, "%s: %s\n", f.Kind, f.Detail)
		}
		for _, m := range f.Messages {
			fmt.Fprintf(w, "  named by %s %s/%s %s (%s)\n", m.User, m.Folder, m.ID, m.MessageID, m.Status)
		}
		if f.Repair != "" {
			fmt.Fprintf(w, "  repair: %s\n", f.Repair)
		}
	}
	if r.Clean {
		fmt.Fprintln(w, "clean")
	}
}

// fsck checks the data directory dir and, with repair, repairs what it can.
// An error means the check itself could not run.
func fsck(ctx context.Context, data *dataFlags, repair bool) (*fsckReport, error) {
	if err := data.resolve(); err != nil {
		return nil, err
	}
	dir := *data.dir
	mu, err := server.ParseMetaURL(dir, *data.meta)
	if err != nil {
		return nil, err
	}
	if mu.Scheme == server.SchemeSQLite {
		// A missing database is a mistyped directory, not a new one.
		if _, err := os.Stat(mu.Path); err != nil {
			return nil, fmt.Errorf("%s is not a data directory: %w", dir, err)
		}
	}
	b, err := data.open(ctx)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	st, store := b.Meta, b.Resources
	rep := &fsckReport{Dir: dir}

	// 1. Every stored resource, whole.
	var infos []resource.Info
	if err := store.Enumerate(ctx, func(i resource.Info) error { infos = append(infos, i); return nil }); err != nil {
		return nil, err
	}
	held := map[resource.ID]resource.Info{}
	bad := map[resource.ID]int{} // index in rep.Findings
	for _, info := range infos {
		_, err := resource.Check(ctx, store, info.ID)
		switch {
		case err == nil:
			held[info.ID] = info
			rep.Resources++
			continue
		case errors.Is(err, resource.ErrNotFound):
			continue // removed meanwhile (garbage collection)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		rep.Resources++
		kind := findUnreadable
		if errors.Is(err, resource.ErrDamaged) {
			kind = findDamaged
		}
		bad[info.ID] = len(rep.Findings)
		rep.Findings = append(rep.Findings, fsckFinding{Kind: kind, Resource: info.ID, Detail: err.Error()})
	}

	// 2. The database itself, when it is SQLite's (PostgreSQL checks its
	// own pages and constraints).
	if mu.Scheme == server.SchemeSQLite {
		problems, err := checkDatabase(ctx, mu.Path)
		if err != nil {
			return nil, err
		}
		for _, p := range problems {
			rep.Findings = append(rep.Findings, fsckFinding{Kind: findDatabase, Detail: p})
		}
	}

	// 3. What the messages name.
	missing := map[resource.ID]int{}
	err = eachMessage(ctx, st, func(u meta.User, m meta.Message) {
		rep.Messages++
		for _, ref := range m.Refs {
			fm := fsckMessage{User: u.Address, ID: m.ID, Folder: string(m.Folder), MessageID: m.MessageID, Status: string(m.Status)}
			if i, ok := bad[ref.ID]; ok {
				rep.Findings[i].Messages = append(rep.Findings[i].Messages, fm)
				continue
			}
			info, ok := held[ref.ID]
			switch {
			case !ok && (m.Status == meta.StatusFetching || m.Status == meta.StatusFailed):
				// Not there yet, or never to be: the message says so.
			case !ok:
				i, seen := missing[ref.ID]
				if !seen {
					i = len(rep.Findings)
					missing[ref.ID] = i
					rep.Findings = append(rep.Findings, fsckFinding{Kind: findMissing, Resource: ref.ID,
						Detail: "named by a message but not stored"})
				}
				rep.Findings[i].Messages = append(rep.Findings[i].Messages, fm)
			case info.Size != ref.Size:
				rep.Findings = append(rep.Findings, fsckFinding{Kind: findSize, Resource: ref.ID, Messages: []fsckMessage{fm},
					Detail: fmt.Sprintf("the message says %d bytes, the stored resource (which matches its Content-ID) has %d", ref.Size, info.Size)})
			}
		}
	})
	if err != nil {
		return nil, err
	}

	if repair {
		if err := fsckRepair(ctx, st, store, rep); err != nil {
			return nil, err
		}
	}
	rep.Clean = len(rep.Findings) == 0
	if rep.Findings == nil {
		rep.Findings = []fsckFinding{}
	}
	return rep, nil
}

// checkDatabase runs SQLite's integrity_check and foreign_key_check on a
// query-only connection of its own, and returns what they report.
func checkDatabase(ctx context.Context, path string) ([]string, error) {
	q := url.Values{"_pragma": {"busy_timeout(10000)", "query_only(1)"}}
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer db.Close()
	var problems []string
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return nil, fmt.Errorf("integrity_check: %w", err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return nil, fmt.Errorf("integrity_check: %w", err)
		}
		if line != "ok" {
			problems = append(problems, "integrity_check: "+line)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("integrity_check: %w", err)
	}
	rows, err = db.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return nil, fmt.Errorf("foreign_key_check: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var table, parent string
		var rowid sql.NullInt64
		var fkid int64
		if err := rows.Scan(&table, &rowid, &parent, &fkid); err != nil {
			return nil, fmt.Errorf("foreign_key_check: %w", err)
		}
		problems = append(problems, fmt.Sprintf("foreign_key_check: a row of %s (rowid %v) names a missing row of %s", table, rowid.Int64, parent))
	}
	return problems, rows.Err()
}

// eachMessage calls fn for every message of every user, a page at a time.
func eachMessage(ctx context.Context, st meta.Store, fn func(meta.User, meta.Message)) error {
	users, err := st.Users(ctx)
	if err != nil {
		return err
	}
	for _, u := range users {
		for _, f := range []meta.Folder{meta.Inbox, meta.Sent, meta.Drafts} {
			opt := meta.ListOptions{Folder: f, Limit: 500}
			for {
				ms, err := st.Messages(ctx, u.ID, opt)
				if err != nil {
					return err
				}
				for _, m := range ms {
					fn(u, m)
				}
				if len(ms) < opt.Limit {
					break
				}
				k := meta.KeyOf(ms[len(ms)-1])
				opt.After = &k
			}
		}
	}
	return nil
}

// fsckRepair removes the damaged resources and queues again the pulls that
// fetch a damaged or missing resource from the domain it came from.
func fsckRepair(ctx context.Context, st meta.Store, store resource.Store, rep *fsckReport) error {
	pulls, err := pullsByResource(ctx, st)
	if err != nil {
		return err
	}
	mbx := mailbox.New(mailbox.Config{Meta: st, Resources: store})
	for i := range rep.Findings {
		f := &rep.Findings[i]
		if f.Kind != findDamaged && f.Kind != findMissing {
			continue
		}
		var did []string
		if f.Kind == findDamaged {
			if err := store.Remove(ctx, f.Resource); err != nil {
				return fmt.Errorf("removing %s: %w", f.Resource, err)
			}
			did = append(did, "removed")
		}
		var origins []string
		for _, j := range pulls[f.Resource] {
			origin, err := requeuePull(ctx, st, mbx, j.ID, f.Resource)
			if err != nil {
				return err
			}
			if origin != "" && !slices.Contains(origins, origin) {
				origins = append(origins, origin)
			}
		}
		switch {
		case len(origins) > 0:
			did = append(did, "pulling it again from "+strings.Join(origins, ", "))
		case len(f.Messages) > 0:
			did = append(did, "no other domain is known to have it: its owner must upload it again")
		}
		f.Repair = strings.Join(did, "; ")
	}
	return nil
}

// pullsByResource indexes the pull jobs (federation.PullPayload) by the
// resources they fetch.
func pullsByResource(ctx context.Context, st meta.Store) (map[resource.ID][]meta.Job, error) {
	jobs, err := st.Jobs(ctx, federation.JobPull, 0)
	if err != nil {
		return nil, err
	}
	out := map[resource.ID][]meta.Job{}
	for _, j := range jobs {
		var p federation.PullPayload
		if json.Unmarshal(j.Payload, &p) != nil {
			continue
		}
		for _, r := range p.Resources {
			out[r.ID] = append(out[r.ID], j)
		}
	}
	return out, nil
}

// requeuePull queues the pull job id again, due now, and moves the copies it
// completes back to fetching (through the mailbox, the one writer of their
// rows), in one transaction: the server's MTA then
// fetches what is missing as on arrival, and completes the copies (or fails
// them, past the job's horizon). A job running now is left to its worker.
// It returns the domain the job pulls from.
func requeuePull(ctx context.Context, st meta.Store, mbx *mailbox.Service, id int64, lost resource.ID) (string, error) {
	var origin string
	now := time.Now()
	err := st.Update(ctx, func(tx meta.Tx) error {
		j, err := tx.Job(ctx, id)
		if errors.Is(err, meta.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		var p federation.PullPayload
		if err := json.Unmarshal(j.Payload, &p); err != nil {
			return fmt.Errorf("pull job %d: %w", id, err)
		}
		origin = p.Origin
		if j.State == meta.JobRunning {
			return nil
		}
		j.State, j.NextTry, j.Updated = meta.JobQueued, now, now
		j.LastError = fmt.Sprintf("fsck: resource %s was damaged or lost here; pulling it again", lost)
		if err := tx.UpdateJob(ctx, j); err != nil {
			return fmt.Errorf("queueing pull job %d again: %w", id, err)
		}
		for _, r := range p.Messages {
			if err := mbx.Refetch(ctx, tx, r.UserID, r.ID); err != nil {
				return err
			}
		}
		return nil
	})
	return origin, err
}
