package mailbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"strings"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
)

// Automatic forwarding (docs/PROTOCOL.md §12.6): a user's rule forwards
// every message they receive to fixed addresses, keeping their own copy. A
// message received from another domain goes on in chain mode, exactly as
// Forward would send it, with the hop marked Auto-Submitted:
// auto-forwarded so that the domain's AS can hold it to the automatic
// forwarding policy; a message delivered locally goes in message mode,
// marked the same way in its header. The policy is off by default.

// AutoForward is a user's automatic forwarding rule.
type AutoForward struct {
	To      []string `json:"to"`      // the rule's addresses; empty when off
	Enabled bool     `json:"enabled"` // a rule is set
	// Allowed reports the user's policy: whether a rule may be set, and
	// whether a set one forwards (an admin may deny it after).
	Allowed bool `json:"allowed"`
}

// AutoForwardRequest sets the rule; an empty To turns it off.
type AutoForwardRequest struct {
	To []string `json:"to"`
}

// SettingAutoForward is the per-user setting (meta.Reader.UserSetting)
// that holds a user's rule: {"to": [ADDRESS, ...]}; unset or empty: none.
// It is keyed by the user's ID, so it goes with the user.
const SettingAutoForward = "autoforward"

// SettingAutoForwarding is the user's automatic forwarding policy, read by
// the mailbox and the AS: "allow" permits rules; unset denies.
const SettingAutoForwarding = federation.SettingAutoForwarding

// Results of a rule, for the log and pullmail_autoforwards_total{result}.
const (
	AutoQueued        = "queued"         // the forward was queued
	AutoSkippedPolicy = "skipped_policy" // the policy does not allow it (any longer)
	AutoSkippedLoop   = "skipped_loop"   // every target already holds it, or the user forwarded it before
	AutoSkippedLimit  = "skipped_limit"  // one more hop would pass federation.MaxChainHops
	AutoSkippedAuto   = "skipped_auto"   // a local message that a rule made (Auto-Submitted)
	AutoFailed        = "failed"         // the rule could not apply (logged)
)

type storedRule struct {
	To []string `json:"to"`
}

// autoForwardRule is SettingAutoForward as a typed setting.
var autoForwardRule = meta.JSONKey[storedRule](SettingAutoForward)

// rule reads a user's rule; nil when none.
func rule(ctx context.Context, r federation.UserSettingReader, userID int64) ([]string, error) {
	sr, err := autoForwardRule.Get(ctx, r, userID)
	return sr.To, err
}

// AutoForward implements API.
func (s *Service) AutoForward(ctx context.Context) (AutoForward, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return AutoForward{}, err
	}
	var out AutoForward
	err = s.cfg.Meta.View(ctx, func(r meta.Reader) error {
		out, err = readAutoForward(ctx, r, p.UserID)
		return err
	})
	if err != nil {
		return AutoForward{}, internal(err, "reading the forwarding rule failed")
	}
	return out, nil
}

func readAutoForward(ctx context.Context, r meta.Reader, userID int64) (AutoForward, error) {
	to, err := rule(ctx, r, userID)
	if err != nil {
		return AutoForward{}, err
	}
	allowed, err := federation.AutoForwardAllowed(ctx, r, userID)
	if err != nil {
		return AutoForward{}, err
	}
	if to == nil {
		to = []string{}
	}
	return AutoForward{To: to, Enabled: len(to) > 0, Allowed: allowed}, nil
}

// SetAutoForward implements API. The addresses are checked as a forward's
// are; this domain's must be users, and the user's own is refused.
// Turning the rule off is always allowed.
func (s *Service) SetAutoForward(ctx context.Context, req AutoForwardRequest) (AutoForward, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return AutoForward{}, err
	}
	var to []*mail.Address
	if len(req.To) > 0 {
		if to, err = checkForwardRequest(ForwardRequest{To: req.To}); err != nil {
			return AutoForward{}, err
		}
	}
	var out AutoForward
	err = s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		var rule storedRule
		if len(to) > 0 {
			ok, err := federation.AutoForwardAllowed(ctx, tx, p.UserID)
			if err != nil {
				return err
			}
			if !ok {
				return errs.E(errs.Forbidden, "forwarding_denied", "your forwarding policy does not allow automatic forwarding")
			}
			seen := map[string]bool{}
			for _, a := range to {
				norm, _ := account.NormalizeAddress(a.Address)
				if norm == p.Address {
					return errs.E(errs.Invalid, "bad_address", "a rule cannot forward to yourself")
				}
				if seen[norm] {
					continue
				}
				seen[norm] = true
				if _, dom, _ := strings.Cut(norm, "@"); dom == s.cfg.Domain {
					if _, err := tx.UserByAddress(ctx, norm); errors.Is(err, meta.ErrNotFound) {
						return errs.E(errs.Invalid, "unknown_recipient", "no such user: %s", norm)
					} else if err != nil {
						return err
					}
				} else if s.cfg.Outbound == nil {
					return errs.E(errs.Invalid, "remote_delivery_unavailable", "this server does not deliver to other domains")
				}
				rule.To = append(rule.To, formatAddress(a))
			}
		}
		if len(rule.To) > 0 {
			err = autoForwardRule.Set(ctx, tx, p.UserID, rule)
		} else {
			err = autoForwardRule.Clear(ctx, tx, p.UserID)
		}
		if err != nil {
			return err
		}
		out, err = readAutoForward(ctx, tx, p.UserID)
		return err
	})
	if err != nil {
		return AutoForward{}, storeErr(err, "setting the forwarding rule failed")
	}
	s.log.Info("forwarding rule set", "user", p.Address, "to", len(out.To))
	return out, nil
}

// applyRules applies the automatic forwarding rules (docs/PROTOCOL.md
// §12.6) of the owners of copies just delivered, in tx, the transaction
// that delivers them, so that a delivery and the forwards it triggers
// commit together: one code path for mail received from another domain and
// mail of this domain. A copy received (env, the envelope it arrived with,
// is set) goes on in chain mode, as Forward would send it, its hop marked
// automatic; a copy delivered by this domain (env nil) goes in message mode,
// a new message of the user's marked Auto-Submitted, which no rule
// forwards again. pre holds what a message-mode forward needs from outside
// the store (prepare.go); chain mode needs nothing of it.
//
// It returns the copies chain forwards made for this domain's users by
// reference, for the push's pull to complete. A rule that cannot apply is
// skipped and noted in al; the error returned is the store's (or
// errUnprepared): the delivery then fails as a whole.
func (s *Service) applyRules(ctx context.Context, tx meta.Tx, pre *prepared, al *autoLog, delivered []meta.Message, env []byte) ([]meta.Message, error) {
	var made []meta.Message
	// A forward pre lacks a grant for is noted and the other rules applied,
	// so that one run finds every grant missing; then the answer is
	// errUnprepared.
	unprepared := false
	for _, row := range delivered {
		u, err := tx.UserByID(ctx, row.UserID)
		if err != nil {
			return nil, fmt.Errorf("autoforward: user %d: %w", row.UserID, err)
		}
		targets, err := rule(ctx, tx, u.ID)
		if err != nil {
			al.add(slog.LevelError, AutoFailed, "autoforward: the rule is unreadable", "user", u.Address, "err", err)
			continue
		}
		if len(targets) == 0 {
			continue
		}
		attrs := []any{"user", u.Address, "msgid", row.MessageID}
		if env == nil {
			if m, err := placeholder.Parse(row.Placeholder, placeholder.Limits{}); err != nil || m.Header.Has(federation.HAutoSubmitted) {
				al.add(slog.LevelInfo, AutoSkippedAuto, "autoforward skipped: the message was made by a rule", attrs...)
				continue
			}
		}
		ok, err := federation.AutoForwardAllowed(ctx, tx, u.ID)
		if err != nil {
			return nil, err
		}
		if !ok {
			al.add(slog.LevelInfo, AutoSkippedPolicy, "autoforward skipped: the policy does not allow it", attrs...)
			continue
		}
		p := auth.Principal{UserID: u.ID, Address: u.Address}
		if env == nil {
			var to []*mail.Address
			for _, t := range targets {
				if a, err := mail.ParseAddress(t); err == nil {
					to = append(to, a)
				}
			}
			// Keyed by what stays the same when the transaction runs
			// again (Service.update): the user and the message.
			msgid := pre.messageID(fmt.Sprintf("autoforward:%d:%s", u.ID, row.MessageID))
			plan, err := s.planForward(ctx, tx, pre, p, row, to, nil, msgid, true)
			if errors.Is(err, errUnprepared) {
				unprepared = true
				continue
			} else if err != nil { // refused before it wrote anything
				al.add(slog.LevelError, AutoFailed, "autoforward failed", append(attrs, "err", err)...)
				continue
			}
			copies, err := plan.write(ctx, tx, s.cfg.Outbound, true)
			if err != nil {
				return nil, err
			}
			al.add(slog.LevelInfo, AutoQueued, "autoforward queued", append(attrs, "forward_id", msgid, "mode", "message")...)
			al.sent(len(copies))
			// The forward's recipients' rules: each skips it (Auto-Submitted).
			if _, err := s.applyRules(ctx, tx, pre, al, copies, nil); err != nil {
				return nil, err
			}
			continue
		}
		fwd, isFwd := s.cfg.Outbound.(Forwarder)
		var e federation.Envelope
		if err := json.Unmarshal(env, &e); err != nil || len(e.Chain) == 0 || !isFwd {
			al.add(slog.LevelError, AutoFailed, "autoforward: no envelope or no MTA to forward with", append(attrs, "err", err)...)
			continue
		}
		to, result, why := autoTargets(e, u.Address, targets, s.cfg.Domain)
		if result != "" {
			al.add(slog.LevelInfo, result, "autoforward skipped", append(attrs, "result", result, "reason", why)...)
			continue
		}
		plan, err := s.planChain(ctx, tx, p, row, e, to, "", true)
		if errs.KindOf(err) == errs.Invalid { // a local target is gone
			al.add(slog.LevelInfo, AutoFailed, "autoforward skipped", append(attrs, "result", AutoFailed, "err", err)...)
			continue
		} else if err != nil {
			return nil, err
		}
		local, err := plan.commit(ctx, tx, fwd, u.Address, row.Status)
		if err != nil {
			return nil, err
		}
		made = append(made, local...)
		al.add(slog.LevelInfo, AutoQueued, "autoforward queued", append(attrs, "forward_id", plan.hop.ForwardID,
			"domains", len(plan.copies), "local_recipients", len(plan.local))...)
	}
	if unprepared {
		return nil, errUnprepared
	}
	return made, nil
}

// autoLog collects what the rules did in a transaction, logged and counted
// in pullmail_autoforwards_total by flush once it commits: a transaction
// that rolls back, or runs again (Service.update), did nothing.
type autoLog []autoEntry

type autoEntry struct {
	level  slog.Level
	result string // for pullmail_autoforwards_total; "" for a send
	msg    string
	attrs  []any
	local  int // a send's: its copies delivered here
}

func (l *autoLog) add(level slog.Level, result, msg string, attrs ...any) {
	*l = append(*l, autoEntry{level: level, result: result, msg: msg, attrs: attrs})
}

// sent notes a forward sent as a message, with its local copies, for the
// send metrics.
func (l *autoLog) sent(local int) { *l = append(*l, autoEntry{local: local}) }

func (l autoLog) flush(s *Service) {
	for _, e := range l {
		if e.result == "" {
			s.cfg.Metrics.sent(e.local)
			continue
		}
		s.log.Log(context.Background(), e.level, e.msg, e.attrs...)
		s.cfg.Metrics.autoForward(e.result)
	}
}

// autoTargets decides which of a rule's targets a received copy goes on
// to (docs/PROTOCOL.md §12.6): none when one more hop would pass
// federation.MaxChainHops, or when the user forwarded the message before (a
// chain loop); without every target the chain already names (its author,
// recipients, forwarders and forwards' recipients) or whose domain already
// sent a hop (the AS would refuse: §10.7). It returns a result when
// nothing is left, with the reason.
func autoTargets(env federation.Envelope, self string, targets []string, domain string) ([]*mail.Address, string, string) {
	if len(env.Chain)+1 > federation.MaxChainHops {
		return nil, AutoSkippedLimit, fmt.Sprintf("the chain has %d hops, the most is %d", len(env.Chain), federation.MaxChainHops)
	}
	seen := map[string]bool{}
	domains := map[string]bool{}
	add := func(v placeholder.Value) {
		for _, a := range federation.Addresses(v) {
			seen[strings.ToLower(a)] = true
		}
	}
	if m, err := placeholder.Parse(env.Placeholder, placeholder.Limits{}); err == nil {
		for _, n := range []string{placeholder.HFrom, placeholder.HTo, placeholder.HCc} {
			add(m.Header.Get(n))
		}
		if from := federation.Addresses(m.Header.Get(placeholder.HFrom)); len(from) == 1 {
			_, d, _ := strings.Cut(from[0], "@")
			domains[strings.ToLower(d)] = true
		}
	}
	for _, el := range env.Chain[:len(env.Chain)-1] { // the forwarding hops
		h, err := placeholder.ParseHeader(el.Headers, placeholder.Limits{})
		if err != nil {
			continue
		}
		from := federation.Addresses(h.Get(placeholder.HForwardedFrom))
		if len(from) == 1 {
			if strings.EqualFold(from[0], self) {
				return nil, AutoSkippedLoop, "the user forwarded this message before"
			}
			_, d, _ := strings.Cut(from[0], "@")
			domains[strings.ToLower(d)] = true
		}
		add(h.Get(placeholder.HForwardedFrom))
		add(h.Get(placeholder.HForwardedTo))
	}
	var out []*mail.Address
	var dropped []string
	for _, t := range targets {
		a, err := mail.ParseAddress(t)
		if err != nil {
			dropped = append(dropped, t)
			continue
		}
		norm, err := account.NormalizeAddress(a.Address)
		_, d, _ := strings.Cut(norm, "@")
		if err != nil || seen[norm] || (d != domain && domains[d]) {
			dropped = append(dropped, norm)
			continue
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, AutoSkippedLoop, "the chain already reaches " + strings.Join(dropped, ", ")
	}
	return out, "", ""
}

func (h *handler) autoForward(w http.ResponseWriter, r *http.Request) {
	af, err := h.api.AutoForward(r.Context())
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, af)
}

func (h *handler) setAutoForward(w http.ResponseWriter, r *http.Request) {
	doc, err := readDoc(w, r)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	var req AutoForwardRequest
	if err := decodeBody(doc, &req, `the body must be {"to": [ADDRESS, ...]}`); err != nil {
		errs.WriteHTTP(w, err) // duplicate_key, unknown_member or malformed_json (§8.3)
		return
	}
	af, err := h.api.SetAutoForward(r.Context(), req)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, af)
}

func (h *handler) deleteAutoForward(w http.ResponseWriter, r *http.Request) {
	af, err := h.api.SetAutoForward(r.Context(), AutoForwardRequest{})
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, af)
}
