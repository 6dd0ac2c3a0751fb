package federation

import (
	"context"

	"github.com/pullmail/pullmail/meta"
)

// The forwarding policy of a user (docs/PROTOCOL.md §12.2, §12.6) is this
// domain's own, not wire format; it lives here because two parts of a
// domain enforce it: the authorization server when it issues a chained
// assertion, and the mailbox when a user or a rule forwards.

// SettingForwarding is the per-user setting (meta.Reader.UserSetting) of a
// user's forwarding policy: "deny" forbids their forwards. Per-user
// settings are keyed by the user's ID, so that they go with the user: a new
// account at a deleted user's address starts from the defaults.
const SettingForwarding = "forwarding"

// SettingAutoForwarding is the per-user setting of a user's automatic
// forwarding policy, separate from SettingForwarding: "allow" permits
// forwards made by a rule (docs/PROTOCOL.md §12.6). Unset, or any other
// value, denies them: automatic forwarding to other domains is an
// exfiltration path, so the admin opts a user in.
const SettingAutoForwarding = "autoforwarding"

// A forwarding hop made by a rule, not by its user, carries the signed
// header Auto-Submitted: auto-forwarded (RFC 3834 §5) in its block.
const (
	HAutoSubmitted = "Auto-Submitted"
	AutoForwarded  = "auto-forwarded"
)

// UserSettingReader reads per-user settings (meta.Reader has it).
type UserSettingReader = meta.UserSettingReader

// The policies as typed settings: forwarding is allowed unless "deny",
// automatic forwarding denied unless "allow".
var (
	Forwarding     = meta.Switch(SettingForwarding, true)
	AutoForwarding = meta.Switch(SettingAutoForwarding, false)
)

// ForwardingDenied reports whether the user's forwarding policy forbids
// their forwards ("deny"; unset allows them).
func ForwardingDenied(ctx context.Context, r UserSettingReader, userID int64) (bool, error) {
	allowed, err := Forwarding.Get(ctx, r, userID)
	return !allowed, err
}

// AutoForwardAllowed reports whether the user may forward automatically:
// their forwarding policy is not "deny" and their automatic forwarding
// policy is "allow".
func AutoForwardAllowed(ctx context.Context, r UserSettingReader, userID int64) (bool, error) {
	if denied, err := ForwardingDenied(ctx, r, userID); err != nil || denied {
		return false, err
	}
	return AutoForwarding.Get(ctx, r, userID)
}
