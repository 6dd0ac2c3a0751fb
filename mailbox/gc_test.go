package mailbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	metamem "github.com/pullmail/pullmail/meta/memstore"
	"github.com/pullmail/pullmail/meta/postgres"
	"github.com/pullmail/pullmail/meta/postgres/pgtest"
	"github.com/pullmail/pullmail/meta/sqlite"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/fsstore"
	resmem "github.com/pullmail/pullmail/resource/memstore"
	"github.com/pullmail/pullmail/resource/s3store"
	"github.com/pullmail/pullmail/resource/s3store/s3test"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// backend is a pair of stores the mailbox runs on.
type backend struct {
	name string
	open func(t *testing.T) (meta.Store, resource.Store)
}

// backends are every pair: the embedded default, memory, and PostgreSQL
// with S3 (skipped where they are missing, failed in CI).
var backends = []backend{
	{"sqlite+files", func(t *testing.T) (meta.Store, resource.Store) {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "meta.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		rs, err := fsstore.New(filepath.Join(t.TempDir(), "resources"), fsstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs.Close() })
		return st, rs
	}},
	{"memory", func(t *testing.T) (meta.Store, resource.Store) {
		return metamem.New(), resmem.New()
	}},
	{"postgres+s3", func(t *testing.T) (meta.Store, resource.Store) {
		url := pgtest.URL(t)
		srv := s3test.Start(t)
		st, err := postgres.Open(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		rs, err := s3store.Open(t.Context(), srv.URL(), srv.Options())
		if err != nil {
			t.Fatal(err)
		}
		return st, rs
	}},
}

// onlyReader hides a reader's Seek: an HTTP body, which an upload cannot
// read twice.
type onlyReader struct{ io.Reader }

// TestCollectRacesUploads: garbage collection runs without pause while
// users upload the same bytes again and again, each time just as the
// previous copy has become unreferenced (its drafts deleted, its uploads
// expired). Every upload that succeeds, and the draft that names it, finds
// the bytes whole: nothing is lost, whatever the interleaving. An upload
// whose bytes a collection took, and that cannot read them again, is
// answered 503 collecting and repeated.
func TestCollectRacesUploads(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			st, rs := b.open(t)
			ctx := t.Context()
			const ttl = 150 * time.Millisecond
			svc := mailbox.New(mailbox.Config{Domain: "a.test", Meta: st, Resources: rs, UploadTTL: ttl})
			const users, rounds = 6, 16
			var principals []context.Context
			err := st.Update(ctx, func(tx meta.Tx) error {
				principals = principals[:0]
				for i := range users {
					u, err := tx.AddUser(ctx, meta.User{Address: fmt.Sprintf("u%d@a.test", i), PasswordHash: "x"})
					if err != nil {
						return err
					}
					principals = append(principals, auth.WithPrincipal(ctx, auth.Principal{UserID: u.ID, Address: u.Address}))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			same := bytes.Repeat([]byte("the same bytes, uploaded again and again\n"), 2000)
			want := resource.IDOf(same)

			var removed, collecting, expired atomic.Int64
			stop := make(chan struct{})
			gcDone := make(chan struct{})
			go func() {
				defer close(gcDone)
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
					n, err := svc.CollectGarbage(ctx, time.Hour)
					if err != nil {
						t.Errorf("CollectGarbage: %v", err)
						return
					}
					removed.Add(int64(n))
				}
			}()
			for r := range rounds {
				var wg sync.WaitGroup
				drafts := make([]string, users)
				for i, pctx := range principals {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for attempt := 0; ; attempt++ {
							if attempt == 20 {
								t.Errorf("round %d, user %d: no upload after %d attempts", r, i, attempt)
								return
							}
							var src io.Reader = bytes.NewReader(same)
							if i%2 == 1 {
								src = onlyReader{src}
							}
							up, err := svc.Upload(pctx, src, mailbox.UploadOptions{Size: int64(len(same))})
							if errs.CodeOf(err) == "collecting" {
								collecting.Add(1)
								continue
							}
							if err != nil || up.ContentID != want {
								t.Errorf("round %d, user %d: upload %+v, %v", r, i, up, err)
								return
							}
							m, err := svc.CreateDraft(pctx, compose(t, "", []string{"u0@a.test"}, nil, nil, "round", up))
							if errs.CodeOf(err) == "unknown_resource" {
								expired.Add(1) // the upload expired first (ttl): upload again
								continue
							}
							if err != nil {
								t.Errorf("round %d, user %d: draft: %v", r, i, err)
								return
							}
							drafts[i] = m.ID
							// Referenced by the draft: no collection may
							// take it now, so it must read whole.
							rc, _, err := svc.Download(pctx, m.ID, want)
							if err != nil {
								t.Errorf("round %d, user %d: the bytes of a draft are gone: %v", r, i, err)
								return
							}
							got, err := io.ReadAll(rc)
							rc.Close()
							if err != nil || !bytes.Equal(got, same) {
								t.Errorf("round %d, user %d: the draft's bytes read %d bytes, %v", r, i, len(got), err)
							}
							return
						}
					}()
				}
				wg.Wait()
				if t.Failed() {
					break
				}
				for i, id := range drafts {
					if err := svc.Purge(principals[i], id); err != nil { // for good: a delete would keep it in trash
						t.Fatalf("deleting draft %s: %v", id, err)
					}
				}
				// The uploads expire and the collector, which never
				// stops, takes the bytes, or is taking them when the
				// next round uploads them again.
				time.Sleep(ttl + time.Duration(rand.IntN(10))*time.Millisecond)
			}
			close(stop)
			<-gcDone
			t.Logf("%d removals, %d uploads answered collecting, %d drafts met an expired upload", removed.Load(), collecting.Load(), expired.Load())
			if removed.Load() == 0 {
				t.Errorf("the collector never removed the unreferenced bytes: the race did not run")
			}
			var left []meta.Condemnation
			if err := st.View(ctx, func(r meta.Reader) error {
				var err error
				left, err = r.Condemnations(ctx, time.Now().Add(time.Hour), 0)
				return err
			}); err != nil || len(left) != 0 {
				t.Errorf("condemnations left: %+v, %v", left, err)
			}
			if _, err := rs.Stat(ctx, want); err != nil && !errors.Is(err, resource.ErrNotFound) {
				t.Errorf("Stat after the race: %v", err)
			}
		})
	}
}

// TestCollectFinishesLeftovers: a condemnation older than the grace is a
// dead collector's: the next collection removes its blob and releases it.
// A younger one may be a live collector's, between its condemnation and its
// removal: it is left alone, and its blob too.
func TestCollectFinishesLeftovers(t *testing.T) {
	for _, b := range backends[:2] {
		t.Run(b.name, func(t *testing.T) {
			st, rs := b.open(t)
			ctx := t.Context()
			now := time.Now()
			svc := mailbox.New(mailbox.Config{Domain: "a.test", Meta: st, Resources: rs, Clock: func() time.Time { return now }})
			put := func(s string) resource.ID {
				info, err := rs.Put(ctx, bytes.NewReader([]byte(s)), resource.PutOptions{Size: int64(len(s))})
				if err != nil {
					t.Fatal(err)
				}
				return info.ID
			}
			dead, live := put("a dead collector's"), put("a live collector's")
			err := st.Update(ctx, func(tx meta.Tx) error {
				for id, at := range map[resource.ID]time.Time{dead: now.Add(-2 * time.Hour), live: now.Add(-time.Minute)} {
					if ok, err := tx.Condemn(ctx, id, at); err != nil || !ok {
						return fmt.Errorf("condemn %s: %v %w", id, ok, err)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			n, err := svc.CollectGarbage(ctx, time.Hour)
			if err != nil || n != 1 {
				t.Fatalf("CollectGarbage = %d, %v; want the dead collector's one", n, err)
			}
			if _, err := rs.Stat(ctx, dead); !errors.Is(err, resource.ErrNotFound) {
				t.Errorf("the dead collector's blob: %v", err)
			}
			if _, err := rs.Stat(ctx, live); err != nil {
				t.Errorf("the live collector's blob was taken: %v", err)
			}
			for id, want := range map[resource.ID]bool{dead: false, live: true} {
				var c bool
				if err := st.View(ctx, func(r meta.Reader) error {
					var err error
					c, err = r.Condemned(ctx, id)
					return err
				}); err != nil || c != want {
					t.Errorf("Condemned(%s) = %v, %v; want %v", id, c, err, want)
				}
			}
		})
	}
}
