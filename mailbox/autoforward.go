package mailbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// rule reads a user's rule; nil when none.
func rule(ctx context.Context, r federation.UserSettingReader, userID int64) ([]string, error) {
	v, err := r.UserSetting(ctx, userID, SettingAutoForward)
	if errors.Is(err, meta.ErrNotFound) || (err == nil && v == "") {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading the forwarding rule of user %d: %w", userID, err)
	}
	var sr storedRule
	if err := json.Unmarshal([]byte(v), &sr); err != nil {
		return nil, fmt.Errorf("the forwarding rule of user %d is unreadable: %w", userID, err)
	}
	return sr.To, nil
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
		value := ""
		if len(to) > 0 {
			ok, err := federation.AutoForwardAllowed(ctx, tx, p.UserID)
			if err != nil {
				return err
			}
			if !ok {
				return errs.E(errs.Forbidden, "forwarding_denied", "your forwarding policy does not allow automatic forwarding")
			}
			var list []string
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
				list = append(list, formatAddress(a))
			}
			b, err := json.Marshal(storedRule{To: list})
			if err != nil {
				return err
			}
			value = string(b)
		}
		if err := tx.SetUserSetting(ctx, p.UserID, SettingAutoForward, value); err != nil {
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

// AutoForwardReceived applies the rules of the owners of copies a push
// stored, inside the transaction that stores them (the server wires it as
// inbound.Config.Delivered): for each rule that may apply, a chain forward
// is queued and recorded as Forward records one. It returns the copies it
// made for this domain's users, by reference: the push's pull completes
// them with the others. A rule that cannot apply is skipped with a log
// line and a metric; the error returned is the store's only (the push then
// fails and is retried).
func (s *Service) AutoForwardReceived(ctx context.Context, tx meta.Tx, envelopeJSON []byte, copies []federation.MessageRef) ([]federation.MessageRef, error) {
	var made []federation.MessageRef
	for _, c := range copies {
		u, err := tx.UserByID(ctx, c.UserID)
		if err != nil {
			return nil, fmt.Errorf("autoforward: user %d: %w", c.UserID, err)
		}
		targets, err := rule(ctx, tx, u.ID)
		if err != nil {
			s.log.Error("autoforward: the rule is unreadable", "user", u.Address, "err", err)
			s.cfg.Metrics.autoForward(AutoFailed)
			continue
		}
		if len(targets) == 0 {
			continue
		}
		row, err := tx.Message(ctx, c.UserID, c.ID)
		if err != nil {
			return nil, fmt.Errorf("autoforward: copy %s: %w", c.ID, err)
		}
		log := s.log.With("user", u.Address, "msgid", row.MessageID)
		ok, err := federation.AutoForwardAllowed(ctx, tx, u.ID)
		if err != nil {
			return nil, err
		}
		if !ok {
			log.Info("autoforward skipped: the policy does not allow it")
			s.cfg.Metrics.autoForward(AutoSkippedPolicy)
			continue
		}
		fwd, isFwd := s.cfg.Outbound.(Forwarder)
		var env federation.Envelope
		if err := json.Unmarshal(envelopeJSON, &env); err != nil || len(env.Chain) == 0 || !isFwd {
			log.Error("autoforward: no envelope or no MTA to forward with", "err", err)
			s.cfg.Metrics.autoForward(AutoFailed)
			continue
		}
		to, result, why := autoTargets(env, u.Address, targets, s.cfg.Domain)
		if result != "" {
			log.Info("autoforward skipped", "result", result, "reason", why)
			s.cfg.Metrics.autoForward(result)
			continue
		}
		plan, err := s.planChain(ctx, tx, auth.Principal{UserID: u.ID, Address: u.Address}, row, env, to, "", true)
		if errs.KindOf(err) == errs.Invalid { // a local target is gone
			log.Info("autoforward skipped", "result", AutoFailed, "err", err)
			s.cfg.Metrics.autoForward(AutoFailed)
			continue
		} else if err != nil {
			return nil, err
		}
		local, err := plan.commit(ctx, tx, fwd, u.Address, row.Status)
		if err != nil {
			return nil, err
		}
		for _, m := range local {
			made = append(made, federation.MessageRef{UserID: m.UserID, ID: m.ID})
		}
		log.Info("autoforward queued", "forward_id", plan.hop.ForwardID, "domains", len(plan.copies),
			"local_recipients", len(plan.local))
		s.cfg.Metrics.autoForward(AutoQueued)
	}
	return made, nil
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

// autoForwardLocal applies the rules of the users who just got a copy of a
// message of this domain (Send, after its commit): each goes in message
// mode, a new message of the user's marked Auto-Submitted: auto-forwarded,
// which no rule forwards again. A failure is logged: the send stands.
func (s *Service) autoForwardLocal(ctx context.Context, delivered []meta.Message) {
	ctx = context.WithoutCancel(ctx)
	for _, row := range delivered {
		u, err := s.cfg.Meta.UserByID(ctx, row.UserID)
		if err != nil {
			s.log.Error("autoforward: reading the user", "user_id", row.UserID, "err", err)
			continue
		}
		targets, err := rule(ctx, s.cfg.Meta, u.ID)
		if err != nil || len(targets) == 0 {
			if err != nil {
				s.log.Error("autoforward: the rule is unreadable", "user", u.Address, "err", err)
				s.cfg.Metrics.autoForward(AutoFailed)
			}
			continue
		}
		log := s.log.With("user", u.Address, "msgid", row.MessageID)
		if m, err := placeholder.Parse(row.Placeholder, placeholder.Limits{}); err != nil ||
			m.Header.Has(federation.HAutoSubmitted) {
			log.Info("autoforward skipped: the message was made by a rule", "result", AutoSkippedAuto)
			s.cfg.Metrics.autoForward(AutoSkippedAuto)
			continue
		}
		if ok, err := federation.AutoForwardAllowed(ctx, s.cfg.Meta, u.ID); err != nil || !ok {
			log.Info("autoforward skipped: the policy does not allow it", "err", err)
			s.cfg.Metrics.autoForward(AutoSkippedPolicy)
			continue
		}
		var to []*mail.Address
		for _, t := range targets {
			if a, err := mail.ParseAddress(t); err == nil {
				to = append(to, a)
			}
		}
		f, err := s.forwardAsMessage(auth.WithPrincipal(ctx, auth.Principal{UserID: u.ID, Address: u.Address}), row, to, "", true)
		if err != nil {
			log.Error("autoforward failed", "err", err)
			s.cfg.Metrics.autoForward(AutoFailed)
			continue
		}
		log.Info("autoforward queued", "forward_id", f.ForwardID, "mode", f.Mode)
		s.cfg.Metrics.autoForward(AutoQueued)
	}
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
