package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// UserKey names a per-user setting of type T: its name in the store, its
// value when unset, and how the value is kept as the string the store
// holds. Code reads and writes a user's settings through their keys, so
// that one decides once what a stored word means (the forwarding policy's
// "deny", a rule's JSON) instead of each reader comparing strings.
type UserKey[T any] struct {
	Name    string
	Default T // what Get returns when the user has no value
	decode  func(string) (T, error)
	encode  func(T) (string, error)
}

// Switch is an on/off setting kept as the word "allow" or "deny". Unset, or
// any other word, is def: a policy that defaults to allow is denied only by
// "deny", one that defaults to deny is allowed only by "allow".
func Switch(name string, def bool) UserKey[bool] {
	return UserKey[bool]{Name: name, Default: def,
		decode: func(v string) (bool, error) {
			switch v {
			case "allow":
				return true, nil
			case "deny":
				return false, nil
			}
			return def, nil
		},
		encode: func(on bool) (string, error) {
			if on {
				return "allow", nil
			}
			return "deny", nil
		}}
}

// JSONKey is a setting kept as T's JSON; unset is T's zero value. A stored
// value that does not decode is an error: a setting is never silently
// reset.
func JSONKey[T any](name string) UserKey[T] {
	return UserKey[T]{Name: name,
		decode: func(v string) (T, error) {
			var t T
			err := json.Unmarshal([]byte(v), &t)
			return t, err
		},
		encode: func(t T) (string, error) {
			b, err := json.Marshal(t)
			return string(b), err
		}}
}

// Get returns the user's value, or k.Default when it is unset (or there is
// no such user).
func (k UserKey[T]) Get(ctx context.Context, r UserSettingReader, userID int64) (T, error) {
	v, err := r.UserSetting(ctx, userID, k.Name)
	if errors.Is(err, ErrNotFound) || (err == nil && v == "") {
		return k.Default, nil
	} else if err != nil {
		return k.Default, fmt.Errorf("reading setting %s of user %d: %w", k.Name, userID, err)
	}
	t, err := k.decode(v)
	if err != nil {
		return k.Default, fmt.Errorf("setting %s of user %d is unreadable: %w", k.Name, userID, err)
	}
	return t, nil
}

// Set stores the user's value (ErrNotFound when there is no such user).
func (k UserKey[T]) Set(ctx context.Context, w UserSettingWriter, userID int64, v T) error {
	s, err := k.encode(v)
	if err != nil {
		return fmt.Errorf("encoding setting %s: %w", k.Name, err)
	}
	return w.SetUserSetting(ctx, userID, k.Name, s)
}

// Clear unsets the user's value: Get returns k.Default again.
func (k UserKey[T]) Clear(ctx context.Context, w UserSettingWriter, userID int64) error {
	return w.SetUserSetting(ctx, userID, k.Name, "")
}
