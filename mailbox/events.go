package mailbox

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
)

// Event is one event of the user's event stream (docs/PROTOCOL.md §8.13).
type Event struct {
	// Kind is "cursor" (the first event: the latest cursor when the stream
	// opened), "change" (the user's change log advanced: call Changes) or
	// "ping" (a keep-alive; ignore it).
	Kind   string `json:"-"`
	Cursor string `json:"cursor,omitempty"`
}

// Event kinds.
const (
	EventCursor = "cursor"
	EventChange = "change"
	EventPing   = "ping"
)

// Hub wakes the event streams of users whose change log advanced in this
// process. The server feeds it from the metadata store's commit callback
// (sqlite.Store.OnCommit), which sees every writer of the process: the
// mailbox, inbound deliveries, the MTA's pulls. Writers in other processes
// are seen by the streams' polling (Config.EventPoll). Safe for concurrent
// use; the zero value is not usable: NewHub.
type Hub struct {
	mu     sync.Mutex
	subs   map[int64]map[chan struct{}]struct{}
	all    map[chan struct{}]struct{} // woken by every Publish (subscribeAll)
	closed chan struct{}
	once   sync.Once
}

// NewHub returns an open hub.
func NewHub() *Hub {
	return &Hub{subs: map[int64]map[chan struct{}]struct{}{}, all: map[chan struct{}]struct{}{}, closed: make(chan struct{})}
}

// Publish wakes the streams of the users. It never blocks: a stream that
// has not consumed its last wake-up gets no second one (it will read the
// log once for both).
func (h *Hub) Publish(users []int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.all {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	for _, u := range users {
		for ch := range h.subs[u] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// subscribeAll returns a channel woken (without blocking Publish) after any
// user's commit, and its unsubscribe: the search indexer's wake-up.
func (h *Hub) subscribeAll() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	h.all[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.all, ch)
		h.mu.Unlock()
	}
}

// Close ends every stream, now and later (server shutdown). Idempotent.
func (h *Hub) Close() { h.once.Do(func() { close(h.closed) }) }

// Done is closed by Close.
func (h *Hub) Done() <-chan struct{} { return h.closed }

// subscribe returns a channel woken for the user's changes and a function
// that unsubscribes.
func (h *Hub) subscribe(user int64) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[user] == nil {
		h.subs[user] = map[chan struct{}]struct{}{}
	}
	h.subs[user][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[user], ch)
		if len(h.subs[user]) == 0 {
			delete(h.subs, user)
		}
		h.mu.Unlock()
	}
}

// subscribers counts the open subscriptions (for tests).
func (h *Hub) subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.subs {
		n += len(m)
	}
	return n
}

// Events implements API: it calls fn with a cursor event at once, then with
// a change event whenever the user's change log advances (woken by the Hub,
// or found by polling every Config.EventPoll), and a ping every
// Config.EventPing, until ctx ends or the hub closes (nil), or fn or a read
// fails (that error).
func (s *Service) Events(ctx context.Context, fn func(Event) error) error {
	p, err := auth.Must(ctx)
	if err != nil {
		return err
	}
	var wake <-chan struct{}
	var done <-chan struct{}
	if h := s.cfg.Events; h != nil {
		// Subscribe before reading the cursor: a commit after the read
		// wakes us.
		var cancel func()
		wake, cancel = h.subscribe(p.UserID)
		defer cancel()
		done = h.Done()
	}
	last, err := s.cfg.Meta.Cursor(ctx)
	if err != nil {
		return storeErr(err, "reading the cursor failed")
	}
	if err := fn(Event{Kind: EventCursor, Cursor: strconv.FormatInt(last, 10)}); err != nil {
		return err
	}
	poll := time.NewTicker(s.cfg.EventPoll)
	defer poll.Stop()
	ping := time.NewTicker(s.cfg.EventPing)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			return nil
		case <-ping.C:
			if err := fn(Event{Kind: EventPing}); err != nil {
				return err
			}
			continue
		case <-wake:
		case <-poll.C:
		}
		head, err := s.cfg.Meta.Cursor(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return storeErr(err, "reading the cursor failed")
		}
		if head <= last {
			continue
		}
		// The cursor is the whole store's: tell the user only of their own.
		chs, err := s.cfg.Meta.Changes(ctx, p.UserID, last, 1)
		if err != nil && !errors.Is(err, meta.ErrCursorGone) {
			if ctx.Err() != nil {
				return nil
			}
			return storeErr(err, "reading changes failed")
		}
		last = head
		if len(chs) > 0 || err != nil { // a pruned log: the client will resync
			if err := fn(Event{Kind: EventChange, Cursor: strconv.FormatInt(head, 10)}); err != nil {
				return err
			}
		}
	}
}

// events serves GET /api/v1/events as Server-Sent Events (WHATWG HTML
// §9.2): "event: cursor" then "event: change" frames whose data is
// {"cursor":"N"}, and ": ping" comments.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	hdr := w.Header()
	started := false
	start := func() error {
		if started {
			return nil
		}
		started = true
		hdr.Set("Content-Type", "text/event-stream")
		hdr.Set("Cache-Control", "no-store")
		hdr.Set("X-Accel-Buffering", "no") // a buffering proxy would hold events back
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if r.Method == http.MethodHead {
		start()
		return
	}
	err := h.api.Events(r.Context(), func(ev Event) error {
		start()
		var err error
		if ev.Kind == EventPing {
			_, err = fmt.Fprint(w, ": ping\n\n")
		} else {
			_, err = fmt.Fprintf(w, "event: %s\ndata: {\"cursor\":%q}\n\n", ev.Kind, ev.Cursor)
		}
		if err == nil {
			err = rc.Flush()
		}
		return err
	})
	if err != nil && !started {
		errs.WriteHTTP(w, err)
	}
}
