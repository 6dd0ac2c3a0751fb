package jmap

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/websocket"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
)

// pushTypes are the types a StateChange names; every one's state is the
// change log's cursor (Mailbox's with its folder hash, which a client
// compares with what its Mailbox/get said).
var pushTypes = []string{"Email", "Mailbox", "Thread", "EmailDelivery", "EmailSubmission"}

// stateChange is the StateChange object (RFC 8620 §7.1) for a cursor.
func (h *Handler) stateChange(c *call, cursor string, types []string) (map[string]any, error) {
	changed := map[string]string{}
	for _, t := range types {
		changed[t] = cursor
		if t == "Mailbox" {
			ms, err := c.mailboxes()
			if err != nil {
				return nil, err
			}
			st, err := c.mailboxState(ms)
			if err != nil {
				return nil, err
			}
			changed[t] = st
		}
	}
	return map[string]any{"@type": "StateChange", "changed": map[string]any{c.acct: changed}}, nil
}

func parseTypes(s string) []string {
	if s == "" || s == "*" {
		return pushTypes
	}
	var out []string
	for _, t := range strings.Split(s, ",") {
		if slices.Contains(pushTypes, t) {
			out = append(out, t)
		}
	}
	return out
}

// eventSource serves push as Server-Sent Events (RFC 8620 §7.3), fed by
// mailbox.Service.Events: a "state" event on every change of the user's,
// "ping" every ping seconds (at least 5 s, RFC 8620 §7.3: the server may
// raise it), and the stream closed after the first state when
// closeafter=state.
func (h *Handler) eventSource(w http.ResponseWriter, r *http.Request) {
	p, err := auth.Must(r.Context())
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	q := r.URL.Query()
	types := parseTypes(q.Get("types"))
	closeAfter := q.Get("closeafter")
	if closeAfter != "" && closeAfter != "state" && closeAfter != "no" {
		problem(w, http.StatusBadRequest, "about:blank", "closeafter is state or no", "")
		return
	}
	ping := 0
	if v := q.Get("ping"); v != "" {
		if ping, err = strconv.Atoi(v); err != nil || ping < 0 {
			problem(w, http.StatusBadRequest, "about:blank", "ping is a number of seconds", "")
			return
		}
		if ping > 0 && ping < 5 {
			ping = 5
		}
	}
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	c := &call{h: h, ctx: ctx, p: p, acct: accountID(p)}
	var wmu sync.Mutex // the pinger and the events write to w
	if ping > 0 {
		go func() {
			t := time.NewTicker(time.Duration(ping) * time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					wmu.Lock()
					_, err := fmt.Fprintf(w, "event: ping\ndata: {\"interval\":%d}\n\n", ping)
					if err == nil {
						err = rc.Flush()
					}
					wmu.Unlock()
					if err != nil {
						cancel()
						return
					}
				}
			}
		}()
	}
	err = h.mb.Events(ctx, func(ev mailbox.Event) error {
		if ev.Kind == mailbox.EventPing || ev.Kind == mailbox.EventCursor && closeAfter == "state" {
			return nil
		}
		sc, err := h.stateChange(c, ev.Cursor, types)
		if err != nil {
			return err
		}
		b, _ := json.Marshal(sc)
		wmu.Lock()
		_, err = fmt.Fprintf(w, "event: state\ndata: %s\n\n", b)
		if err == nil {
			err = rc.Flush()
		}
		wmu.Unlock()
		if err != nil {
			return err
		}
		if closeAfter == "state" {
			cancel()
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		h.log.Warn("jmap event source ended", "err", err)
	}
}

// webSocket serves RFC 8887: JMAP requests over a WebSocket with the
// "jmap" subprotocol, and push (WebSocketPushEnable / Disable) fed by
// mailbox.Service.Events.
func (h *Handler) webSocket() http.Handler {
	return websocket.Server{
		Handshake: func(cfg *websocket.Config, r *http.Request) error {
			if !slices.Contains(cfg.Protocol, "jmap") {
				return fmt.Errorf("the jmap subprotocol is required")
			}
			cfg.Protocol = []string{"jmap"}
			return nil
		},
		Handler: h.serveWS,
	}
}

func (h *Handler) serveWS(ws *websocket.Conn) {
	defer ws.Close()
	ctx, cancel := context.WithCancel(ws.Request().Context())
	defer cancel()
	p, err := auth.Must(ctx)
	if err != nil {
		return
	}
	send := make(chan any, 16)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case v := <-send:
				if err := websocket.JSON.Send(ws, v); err != nil {
					cancel()
					return
				}
			}
		}
	}()
	var stopPush func()
	defer func() {
		if stopPush != nil {
			stopPush()
		}
	}()
	ws.MaxPayloadBytes = int(h.lim.MaxSizeRequest)
	for {
		var data []byte
		if err := websocket.Message.Receive(ws, &data); err != nil {
			return
		}
		var head struct {
			Type      string   `json:"@type"`
			ID        *string  `json:"id"`
			DataTypes []string `json:"dataTypes"`
			PushState string   `json:"pushState"`
		}
		if err := json.Unmarshal(data, &head); err != nil {
			send <- map[string]any{"@type": "RequestError", "type": errNotJSON, "status": 400, "detail": "not JSON"}
			continue
		}
		switch head.Type {
		case "Request", "":
			req, prob := ParseRequest(data, h.lim.MaxCallsInRequest)
			if prob != nil {
				e := map[string]any{"@type": "RequestError", "type": prob.Type, "status": prob.Status, "detail": prob.Detail}
				if prob.Limit != "" {
					e["limit"] = prob.Limit
				}
				if head.ID != nil {
					e["requestId"] = *head.ID
				}
				send <- e
				continue
			}
			resp := h.run(ctx, p, req)
			out := map[string]any{"@type": "Response", "methodResponses": resp.MethodResponses, "sessionState": resp.SessionState}
			if resp.CreatedIDs != nil {
				out["createdIds"] = resp.CreatedIDs
			}
			if head.ID != nil {
				out["requestId"] = *head.ID
			}
			send <- out
		case "WebSocketPushEnable":
			if stopPush != nil {
				stopPush()
			}
			pctx, stop := context.WithCancel(ctx)
			stopPush = stop
			types := head.DataTypes
			if types == nil {
				types = pushTypes
			}
			go h.mb.Events(pctx, func(ev mailbox.Event) error {
				if ev.Kind == mailbox.EventPing || ev.Kind == mailbox.EventCursor && head.PushState == "" {
					return nil
				}
				if ev.Kind == mailbox.EventCursor && head.PushState == ev.Cursor {
					return nil
				}
				c := &call{h: h, ctx: pctx, p: p, acct: accountID(p)}
				sc, err := h.stateChange(c, ev.Cursor, types)
				if err != nil {
					return err
				}
				sc["pushState"] = ev.Cursor
				select {
				case send <- sc:
				case <-pctx.Done():
				}
				return nil
			})
		case "WebSocketPushDisable":
			if stopPush != nil {
				stopPush()
				stopPush = nil
			}
		default:
			send <- map[string]any{"@type": "RequestError", "type": errNotRequest, "status": 400, "detail": "unknown @type " + head.Type}
		}
	}
}
