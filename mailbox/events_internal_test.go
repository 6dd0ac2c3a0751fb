package mailbox

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/sqlite"
)

// eventsFixture is a Service over a SQLite file, with a second Store on
// the same file standing in for another process (its commits reach no hub).
type eventsFixture struct {
	svc          *Service
	hub          *Hub
	st, other    *sqlite.Store
	alice, bob   meta.User
	srv          *httptest.Server
	handlerCalls chan struct{} // one value per finished events request
}

func newEventsFixture(t *testing.T, poll, ping time.Duration) *eventsFixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meta.db")
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	other, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	f := &eventsFixture{st: st, other: other, hub: NewHub(), handlerCalls: make(chan struct{}, 100)}
	st.OnCommit(f.hub.Publish)
	ctx := t.Context()
	err = st.Update(ctx, func(tx meta.Tx) error {
		if f.alice, err = tx.AddUser(ctx, meta.User{Address: "alice@a.test", PasswordHash: "x"}); err != nil {
			return err
		}
		f.bob, err = tx.AddUser(ctx, meta.User{Address: "bob@a.test", PasswordHash: "x"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = New(Config{Domain: "a.test", Meta: st, Events: f.hub, EventPoll: poll, EventPing: ping})
	h := NewHandler(f.svc)
	// The user is named by a header: authentication is not under test.
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { f.handlerCalls <- struct{}{} }()
		p := auth.Principal{UserID: f.alice.ID, Address: f.alice.Address}
		if r.Header.Get("X-User") == "bob" {
			p = auth.Principal{UserID: f.bob.ID, Address: f.bob.Address}
		}
		h.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	}))
	t.Cleanup(func() {
		f.srv.Close()
		other.Close()
		st.Close()
	})
	return f
}

// insert adds a message for the user through a store.
func (f *eventsFixture) insert(t *testing.T, st meta.Store, user int64, id string) {
	t.Helper()
	now := time.Now()
	err := st.Update(t.Context(), func(tx meta.Tx) error {
		return tx.InsertMessage(t.Context(), meta.Message{ID: id, UserID: user, Folder: meta.Inbox, MessageID: "<" + id + "@a.test>",
			Status: meta.StatusComplete, Date: now, Created: now, Updated: now})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// stream opens the events stream of a user and returns its lines.
func (f *eventsFixture) stream(t *testing.T, ctx context.Context, user string) (<-chan string, *http.Response) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/api/v1/events", nil)
	req.Header.Set("X-User", user)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, ct)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines, resp
}

// next returns the next event's "event: data" pair, skipping blank lines.
func next(t *testing.T, lines <-chan string) string {
	t.Helper()
	var ev string
	for l := range lines {
		if l == "" {
			if ev != "" {
				return ev
			}
			continue
		}
		if ev != "" {
			ev += " "
		}
		ev += l
	}
	t.Fatalf("stream ended (after %q)", ev)
	return ""
}

// TestEventsHubAndPolling: a commit through the hub's store wakes the
// stream; a commit through another Store (another process) is found by
// polling; another user's changes are not announced.
func TestEventsHubAndPolling(t *testing.T) {
	f := newEventsFixture(t, 50*time.Millisecond, time.Hour)
	lines, resp := f.stream(t, t.Context(), "alice")
	defer resp.Body.Close()
	cur, _ := f.st.Cursor(t.Context())
	if got, want := next(t, lines), `event: cursor data: {"cursor":"`+itoa(cur)+`"}`; got != want {
		t.Fatalf("first event %q, want %q", got, want)
	}
	// Bob's message is not alice's change; alice's next one is, and the
	// event names a cursor at least as new as it.
	f.insert(t, f.st, f.bob.ID, "for-bob")
	f.insert(t, f.st, f.alice.ID, "for-alice")
	cur, _ = f.st.Cursor(t.Context())
	if got, want := next(t, lines), `event: change data: {"cursor":"`+itoa(cur)+`"}`; got != want {
		t.Fatalf("after alice's message: %q, want %q", got, want)
	}
	// Another process: no hub, only the poll sees it.
	f.insert(t, f.other, f.alice.ID, "from-elsewhere")
	cur, _ = f.st.Cursor(t.Context())
	if got, want := next(t, lines), `event: change data: {"cursor":"`+itoa(cur)+`"}`; got != want {
		t.Fatalf("after another process's write: %q, want %q", got, want)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestEventsNoLeak opens streams, ends them from the client side and by
// closing the hub (server shutdown), and checks that every handler returned,
// every subscription is gone and no goroutine is left behind.
func TestEventsNoLeak(t *testing.T) {
	f := newEventsFixture(t, time.Hour, time.Hour) // no polling: only the hub wakes
	// Warm up the client's and server's connection goroutines.
	lines, resp := f.stream(t, t.Context(), "alice")
	next(t, lines)
	resp.Body.Close()
	<-f.handlerCalls
	f.srv.Client().CloseIdleConnections()
	base := runtime.NumGoroutine()

	const n = 5
	var cancels []context.CancelFunc
	for range n {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		lines, _ := f.stream(t, ctx, "alice")
		next(t, lines) // the stream is subscribed once its cursor arrived
	}
	if got := f.hub.subscribers(); got != n {
		t.Fatalf("%d subscribers, want %d", got, n)
	}
	for _, c := range cancels {
		c() // the client goes away
	}
	for range n {
		<-f.handlerCalls
	}
	// Shutdown: the hub closes and the streams end from the server side.
	var streams []<-chan string
	for range 3 {
		lines, resp := f.stream(t, t.Context(), "bob")
		defer resp.Body.Close()
		next(t, lines)
		streams = append(streams, lines)
	}
	f.hub.Close()
	for _, lines := range streams {
		for range lines { // drains until the server ends the stream
		}
	}
	for range 3 {
		<-f.handlerCalls
	}
	if got := f.hub.subscribers(); got != 0 {
		t.Errorf("%d subscribers left", got)
	}
	// After Close, a new stream ends at once after its cursor.
	lines, resp = f.stream(t, t.Context(), "alice")
	defer resp.Body.Close()
	next(t, lines)
	for range lines {
	}
	<-f.handlerCalls
	f.srv.Client().CloseIdleConnections()
	// Goroutines end asynchronously (connection readers): wait for the
	// count to come back, failing only if it never does.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEventsPing checks the keep-alive comment.
func TestEventsPing(t *testing.T) {
	f := newEventsFixture(t, time.Hour, time.Millisecond)
	lines, resp := f.stream(t, t.Context(), "alice")
	defer resp.Body.Close()
	next(t, lines)
	if got := next(t, lines); got != ": ping" {
		t.Errorf("keep-alive %q, want \": ping\"", got)
	}
}
