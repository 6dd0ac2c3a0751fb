package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/pullmail/pullmail/errs"
)

// Claims are the registered JWT claims (RFC 7519 §4.1) and the OAuth ones
// Pullmail uses: scope, client_id (RFC 9068 §2.2, RFC 8693 §4), azp, and cnf
// (RFC 7800; jkt from RFC 9449 §6.1). Embed it in a struct for more claims:
// it has no MarshalJSON or UnmarshalJSON of its own, so embedding works.
type Claims struct {
	Issuer    string        `json:"iss,omitempty"`
	Subject   string        `json:"sub,omitempty"`
	Audience  Audience      `json:"aud,omitempty"`
	Expiry    NumericDate   `json:"exp,omitempty"`
	NotBefore NumericDate   `json:"nbf,omitempty"`
	IssuedAt  NumericDate   `json:"iat,omitempty"`
	ID        string        `json:"jti,omitempty"`
	Scope     string        `json:"scope,omitempty"`
	AZP       string        `json:"azp,omitempty"`
	ClientID  string        `json:"client_id,omitempty"`
	Cnf       *Confirmation `json:"cnf,omitempty"`
}

// Confirmation is the cnf claim (RFC 7800 §3.1).
type Confirmation struct {
	JKT string `json:"jkt,omitempty"` // RFC 7638 thumbprint of the DPoP key (RFC 9449 §6.1)
}

// Audience is the aud claim: a string or an array of strings (RFC 7519
// §4.1.3). It marshals as a string when it has one element.
type Audience []string

func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

func (a *Audience) UnmarshalJSON(data []byte) error {
	if bytes.Equal(data, []byte("null")) {
		*a = nil
		return nil
	}
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*a = Audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(data, &l); err != nil {
		return errors.New("aud is neither a string nor an array of strings")
	}
	*a = l
	return nil
}

// maxNumericDate is 9999-12-31T23:59:59Z: later dates are refused so that
// arithmetic on them cannot overflow.
const maxNumericDate = 253402300799

// NumericDate is seconds since the epoch (RFC 7519 §2); zero means absent.
// Fractions are accepted and truncated; negative values and dates after the
// year 9999 are refused.
type NumericDate int64

// NewNumericDate truncates t to a NumericDate.
func NewNumericDate(t time.Time) NumericDate { return NumericDate(t.Unix()) }

// Time is d as a time.Time; the zero time when d is absent.
func (d NumericDate) Time() time.Time {
	if d == 0 {
		return time.Time{}
	}
	return time.Unix(int64(d), 0)
}

func (d *NumericDate) UnmarshalJSON(data []byte) error {
	if bytes.Equal(data, []byte("null")) {
		*d = 0
		return nil
	}
	f, err := strconv.ParseFloat(string(data), 64)
	if err != nil || math.IsNaN(f) {
		return errors.New("NumericDate is not a number")
	}
	if f < 0 || f > maxNumericDate {
		return errors.New("NumericDate out of range")
	}
	*d = NumericDate(int64(f))
	return nil
}

// ClaimsExpect says what Validate accepts.
type ClaimsExpect struct {
	Issuer   string    // required: iss must equal it
	Audience string    // required: aud must contain it
	Now      time.Time // zero: time.Now()
	Leeway   time.Duration
	// MaxLifetime, when set, refuses exp further than this after iat (or
	// now): a stolen token must not work for a year.
	MaxLifetime time.Duration
	// SoleAudience refuses an aud that names anyone besides Audience: a
	// token good at a stranger too could be replayed there (RFC 8725 §3.9).
	SoleAudience bool
}

// Validate checks the time and audience claims (RFC 7519 §4.1, RFC 8725
// §3.8, §3.9). Errors are *errs.Error of kind Unauthorized, code
// invalid_token; an empty Issuer or Audience in want is a bug, reported as
// an Internal error.
func (c Claims) Validate(want ClaimsExpect) error {
	if want.Issuer == "" || want.Audience == "" {
		return errs.E(errs.Internal, "internal", "keys.Claims.Validate: ClaimsExpect needs Issuer and Audience")
	}
	now := want.Now
	if now.IsZero() {
		now = time.Now()
	}
	leeway := max(want.Leeway, 0)
	if c.Issuer != want.Issuer {
		return invalid("iss %s, want %q", quote(c.Issuer), want.Issuer)
	}
	if !slices.Contains(c.Audience, want.Audience) {
		return invalid("aud does not name %q", want.Audience)
	}
	if want.SoleAudience && len(c.Audience) != 1 {
		return invalid("aud names others besides %q", want.Audience)
	}
	if c.Expiry == 0 {
		return invalid("exp missing")
	}
	exp := c.Expiry.Time()
	if !now.Before(exp.Add(leeway)) {
		return invalid("token expired")
	}
	if c.NotBefore != 0 && now.Add(leeway).Before(c.NotBefore.Time()) {
		return invalid("token not valid yet (nbf in the future)")
	}
	if c.IssuedAt != 0 && now.Add(leeway).Before(c.IssuedAt.Time()) {
		return invalid("iat in the future")
	}
	if want.MaxLifetime > 0 {
		if c.IssuedAt != 0 && exp.Sub(c.IssuedAt.Time()) > want.MaxLifetime {
			return invalid("exp more than %v after iat", want.MaxLifetime)
		}
		if exp.Sub(now) > want.MaxLifetime+leeway {
			return invalid("exp more than %v away", want.MaxLifetime)
		}
	}
	return nil
}
