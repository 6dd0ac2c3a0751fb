// Package backuptest fills a domain's stores with everything a copy must
// carry (users with a gap in their IDs, settings, tokens, clients, grants,
// messages in every kind of folder with envelopes and resources, uploads,
// jobs, one of them running), and lists stores the way their users see
// them, so that the tests of package backup and of pullmail migrate,
// backup and restore compare a copy with its source without trusting the
// code under test.
package backuptest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
)

// Spec says how much to fill.
type Spec struct {
	Users    int   // at least 2 (one more is added and deleted, for a gap)
	Messages int   // spread over the users and folders
	Bytes    int64 // of resources in all: one of its own per message, about Bytes/Messages each
	Seed     uint64
}

// Fixture is what Fill made.
type Fixture struct {
	Users     []meta.User
	Resources map[resource.ID]int64
	Bytes     int64
}

// Resource returns n deterministic bytes (a ChaCha8 stream of seed).
func Resource(seed uint64, n int64) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	s[2], s[3] = byte(seed>>16), byte(seed>>24)
	c := rand.NewChaCha8(s)
	c.Read(b)
	return b
}

// Fill fills the stores, which must be empty.
func Fill(t testing.TB, ms meta.Store, rs resource.Store, spec Spec) Fixture {
	t.Helper()
	ctx := context.Background()
	f := Fixture{Resources: map[resource.ID]int64{}}
	put := func(seed uint64, n int64) meta.Ref {
		t.Helper()
		b := Resource(seed, n)
		info, err := rs.Put(ctx, bytes.NewReader(b), resource.PutOptions{Size: n})
		if err != nil {
			t.Fatalf("backuptest: storing a resource: %v", err)
		}
		f.Resources[info.ID] = n
		f.Bytes += n
		return meta.Ref{ID: info.ID, Size: n}
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	err := ms.Update(ctx, func(tx meta.Tx) error {
		f.Users = nil
		for i := range spec.Users + 1 {
			u, err := tx.AddUser(ctx, meta.User{Address: fmt.Sprintf("user%03d@a.test", i), PasswordHash: "$argon2id$v=19$m=65536,t=1,p=4$" + fmt.Sprint(i),
				Created: now.Add(-time.Duration(i) * time.Hour)})
			if err != nil {
				return err
			}
			f.Users = append(f.Users, u)
		}
		if err := tx.DeleteUser(ctx, f.Users[1].ID); err != nil { // a gap in the IDs
			return err
		}
		f.Users = slices.Delete(f.Users, 1, 2)
		for k, v := range map[string]string{"domain.name": "a.test", "forwarding": "allow"} {
			if err := tx.SetSetting(ctx, k, v); err != nil {
				return err
			}
		}
		if err := tx.SetUserSetting(ctx, f.Users[0].ID, "forwarding", "deny"); err != nil {
			return err
		}
		for i, u := range f.Users {
			if err := tx.AddToken(ctx, meta.Token{Hash: []byte(fmt.Sprintf("token-hash-%03d", i)), UserID: u.ID, Label: "cli",
				Created: now, Expires: now.Add(time.Duration(i) * time.Hour)}); err != nil {
				return err
			}
		}
		if err := tx.AddClient(ctx, meta.Client{ID: "webmail", Name: "Webmail", Public: true, RedirectURIs: []string{"https://a.test/webmail/"}, Created: now}); err != nil {
			return err
		}
		if err := tx.AddClient(ctx, meta.Client{ID: "mta", Name: "MTA", JWKS: []byte(`{"keys":[]}`), Created: now}); err != nil {
			return err
		}
		if err := tx.AddGrant(ctx, meta.Grant{Hash: []byte("refresh-1"), Kind: meta.GrantRefresh, Family: "fam-1", ClientID: "webmail",
			UserID: f.Users[0].ID, Scope: "mail", JKT: "jkt", Created: now, Expires: now.Add(24 * time.Hour)}); err != nil {
			return err
		}
		if err := tx.AddGrant(ctx, meta.Grant{Hash: []byte("code-1"), Kind: meta.GrantCode, Family: "fam-2", ClientID: "webmail",
			UserID: f.Users[1].ID, Scope: "mail", RedirectURI: "https://a.test/webmail/", Challenge: "ch", Created: now,
			Expires: now.Add(time.Minute), Used: true}); err != nil {
			return err
		}
		return tx.RevokeFamily(ctx, "fam-0", now.Add(time.Hour))
	})
	if err != nil {
		t.Fatalf("backuptest: accounts: %v", err)
	}

	shared := put(spec.Seed<<32|0xffff_ffff, 1000) // named by every tenth message
	per := int64(0)
	if spec.Messages > 0 {
		per = spec.Bytes / int64(spec.Messages)
	}
	folders := []meta.Folder{meta.Inbox, meta.Archive, meta.Sent, meta.Requests, meta.Junk, meta.Trash, meta.Drafts, "Projects 2026"}
	const batch = 100
	for start := 0; start < spec.Messages; start += batch {
		var msgs []meta.Message
		for i := start; i < min(start+batch, spec.Messages); i++ {
			u := f.Users[i%len(f.Users)]
			folder := folders[i%len(folders)]
			refs := []meta.Ref{put(spec.Seed<<32|uint64(i), per+int64(i%7))}
			if i%10 == 0 {
				refs = append(refs, shared)
			}
			m := meta.Message{
				ID: fmt.Sprintf("msg-%06d", i), UserID: u.ID, Folder: folder,
				MessageID: fmt.Sprintf("<%d@a.test>", i), ThreadID: fmt.Sprintf("<thread-%d@a.test>", i/3),
				Status: meta.StatusComplete, Seen: i%3 == 0, From: "Someone <someone@b.test>",
				Subject: fmt.Sprintf("Message %d", i), Date: now.Add(-time.Duration(i) * time.Minute),
				Created: now.Add(-time.Duration(i) * time.Second), Updated: now,
				Placeholder: fmt.Appendf(nil, `{"headers":{"subject":"Message %d"},"resource":%q}`, i, refs[0].ID),
				Refs:        refs,
			}
			switch folder {
			case meta.Sent:
				m.Status = meta.StatusSent
			case meta.Drafts:
				m.Status, m.Date = meta.StatusDraft, time.Time{}
			case meta.Trash:
				m.TrashedFrom, m.Trashed = meta.Inbox, now.Add(-time.Hour)
			case meta.Requests:
				m.Status, m.StatusReason = meta.StatusFetching, "pulling"
			}
			msgs = append(msgs, m)
		}
		err := ms.Update(ctx, func(tx meta.Tx) error {
			for _, m := range msgs {
				if err := tx.InsertMessage(ctx, m); err != nil {
					return err
				}
				if m.Folder == meta.Inbox {
					if err := tx.SetEnvelope(ctx, m.ID, []byte(`{"chain":["`+m.ID+`"]}`)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("backuptest: messages: %v", err)
		}
	}
	upload := put(spec.Seed<<32|0xffff_fffe, 5000) // an upload no message names yet
	err = ms.Update(ctx, func(tx meta.Tx) error {
		if err := tx.AddUpload(ctx, f.Users[0].ID, upload); err != nil {
			return err
		}
		for i, state := range []meta.JobState{meta.JobQueued, meta.JobQueued, meta.JobDone, meta.JobFailed} {
			j := meta.Job{Kind: "push", Key: fmt.Sprintf("push:msg-%06d:b.test:%d", i, i), Payload: fmt.Appendf(nil, `{"n":%d}`, i),
				State: state, Attempts: i, NextTry: now.Add(time.Duration(i) * time.Minute), LastError: fmt.Sprint("error ", i),
				Created: now.Add(time.Duration(i) * time.Second), Expires: now.Add(5 * 24 * time.Hour)}
			if _, err := tx.AddJob(ctx, j); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("backuptest: uploads and jobs: %v", err)
	}
	// One job running, as a node would hold it.
	if _, err := ms.ClaimJobs(ctx, "node-1", "push", now.Add(time.Hour), 1, time.Minute); err != nil {
		t.Fatalf("backuptest: claiming a job: %v", err)
	}
	return f
}

// Listing is a domain as its users see it: every user's folders, each
// with its messages in listing order (ID, subject, status, seen and the
// digests named), the domain's settings, and every resource stored.
type Listing struct {
	Users     []string
	Folders   map[string][]string // "address folder" → one line per message
	Settings  map[string]string
	Digests   map[resource.ID]int64 // of the resources the messages name
	Envelopes int
}

// List lists the stores, reading every resource the messages name whole
// and checking it against its digest.
func List(t testing.TB, ms meta.Store, rs resource.Store) Listing {
	t.Helper()
	ctx := context.Background()
	l := Listing{Folders: map[string][]string{}, Settings: map[string]string{}, Digests: map[resource.ID]int64{}}
	users, err := ms.Users(ctx)
	if err != nil {
		t.Fatalf("backuptest: %v", err)
	}
	for _, k := range []string{"domain.name", "forwarding"} {
		if v, err := ms.Setting(ctx, k); err == nil {
			l.Settings[k] = v
		}
	}
	for _, u := range users {
		l.Users = append(l.Users, fmt.Sprintf("%d %s %s", u.ID, u.Address, u.Created.UTC().Format(time.RFC3339Nano)))
		if v, err := ms.UserSetting(ctx, u.ID, "forwarding"); err == nil {
			l.Settings[u.Address+" forwarding"] = v
		}
		counts, err := ms.FolderCounts(ctx, u.ID)
		if err != nil {
			t.Fatalf("backuptest: %v", err)
		}
		for _, folder := range slices.Sorted(maps.Keys(counts)) {
			msgs, err := ms.Messages(ctx, u.ID, meta.ListOptions{Folder: folder})
			if err != nil {
				t.Fatalf("backuptest: %v", err)
			}
			key := u.Address + " " + string(folder)
			for _, m := range msgs {
				line := fmt.Sprintf("%s %q %s %v %s", m.ID, m.Subject, m.Status, m.Seen, m.Date.UTC().Format(time.RFC3339Nano))
				for _, r := range m.Refs {
					line += " " + string(r.ID)
					l.Digests[r.ID] = r.Size
				}
				l.Folders[key] = append(l.Folders[key], line)
				if _, err := ms.Envelope(ctx, u.ID, m.ID); err == nil {
					l.Envelopes++
				}
			}
		}
	}
	for id, size := range l.Digests {
		obj, err := rs.Open(ctx, id)
		if err != nil {
			t.Fatalf("backuptest: resource %s: %v", id, err)
		}
		_, n, err := resource.Copy(ctx, io.Discard, obj, resource.PutOptions{Want: id, Size: size})
		obj.Close()
		if err != nil || n != size {
			t.Fatalf("backuptest: resource %s: %d bytes, %v", id, n, err)
		}
	}
	return l
}

// Diff returns the differences of two listings, or "" when they are the
// same.
func Diff(a, b Listing) string {
	var d []string
	if !slices.Equal(a.Users, b.Users) {
		d = append(d, fmt.Sprintf("users %q, then %q", a.Users, b.Users))
	}
	if !maps.Equal(a.Settings, b.Settings) {
		d = append(d, fmt.Sprintf("settings %v, then %v", a.Settings, b.Settings))
	}
	for _, k := range slices.Sorted(maps.Keys(a.Folders)) {
		if !slices.Equal(a.Folders[k], b.Folders[k]) {
			d = append(d, fmt.Sprintf("%s: %d messages, then %d", k, len(a.Folders[k]), len(b.Folders[k])))
		}
	}
	for k := range b.Folders {
		if _, ok := a.Folders[k]; !ok {
			d = append(d, k+": only after")
		}
	}
	if !maps.Equal(a.Digests, b.Digests) {
		d = append(d, fmt.Sprintf("%d resources, then %d", len(a.Digests), len(b.Digests)))
	}
	if a.Envelopes != b.Envelopes {
		d = append(d, fmt.Sprintf("%d envelopes, then %d", a.Envelopes, b.Envelopes))
	}
	if len(d) == 0 {
		return ""
	}
	return fmt.Sprint(d)
}
