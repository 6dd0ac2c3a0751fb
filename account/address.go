// Package account holds the rules for a domain's own users: the one spelling
// of a user's address, password hashing, and the admin-made bearer tokens
// (pullmail token create). It has no storage: the metadata store keeps what
// these functions produce (meta.User.Address, meta.User.PasswordHash,
// meta.Token.Hash), and the admin commands and the mailbox API call them so
// that every path agrees.
//
// Every function is safe for concurrent use.
package account

import (
	"strings"

	"github.com/pullmail/pullmail/errs"
)

// Address limits (RFC 5321 §4.5.3.1.1 and the 254 of RFC 3696 errata 1690).
const (
	MaxAddressLen = 254
	MaxLocalLen   = 64
	maxLabelLen   = 63
)

// CodeBadAddress is the errs code of every NormalizeAddress error.
const CodeBadAddress = "bad_address"

// NormalizeAddress returns the one spelling under which a user of ours is
// stored and looked up. s must be a bare addr-spec, local@domain: no display
// name, no angle brackets, no comments, no white space, no quoted local part,
// no domain literal. The result is s in ASCII lower case, whole.
//
// The local part is folded too, although RFC 5321 §2.4 leaves its case to
// the receiving host: for our own users we are that host, and we choose that
// Alice@ and alice@ are one mailbox, as most providers do, so that two
// accounts cannot differ only by case (a trap for impersonation) and a
// sender's capitals still reach the user. Addresses of other domains are not
// ours to fold: the digests of docs/PROTOCOL.md keep their local part as sent.
//
// Rules: the local part is an RFC 5322 dot-atom (atext separated by single
// dots), at most 64 characters; the domain is ASCII letter-digit-hyphen
// labels of at most 63 characters, none starting or ending with '-', with at
// least one dot (a single label such as "localhost" is refused: it is not a
// mail domain), no trailing dot, and a last label that is not all digits (so
// that an IP address is not taken for a name, RFC 3696 §2); the whole is at
// most 254 characters. Non-ASCII (RFC 6531) addresses are refused for now.
//
// Errors are errs.Invalid with code bad_address.
func NormalizeAddress(s string) (string, error) {
	if s == "" {
		return "", errs.E(errs.Invalid, CodeBadAddress, "empty address")
	}
	if len(s) > MaxAddressLen {
		return "", errs.E(errs.Invalid, CodeBadAddress, "address longer than %d characters", MaxAddressLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return "", errs.E(errs.Invalid, CodeBadAddress, "address %q: only printable ASCII without spaces is allowed (write the bare address, without a name or <>)", s)
		}
	}
	at := strings.IndexByte(s, '@')
	if at < 0 {
		return "", errs.E(errs.Invalid, CodeBadAddress, "address %q has no @domain", s)
	}
	local, domain := strings.ToLower(s[:at]), strings.ToLower(s[at+1:])
	if strings.IndexByte(domain, '@') >= 0 {
		return "", errs.E(errs.Invalid, CodeBadAddress, "address %q has more than one @", s)
	}
	if err := checkLocal(local); err != "" {
		return "", errs.E(errs.Invalid, CodeBadAddress, "address %q: %s", s, err)
	}
	if err := checkDomain(domain); err != "" {
		return "", errs.E(errs.Invalid, CodeBadAddress, "address %q: %s", s, err)
	}
	return local + "@" + domain, nil
}

// checkLocal checks a dot-atom local part and returns a reason if it is bad.
func checkLocal(local string) string {
	switch {
	case local == "":
		return "the local part (before @) is empty"
	case len(local) > MaxLocalLen:
		return "the local part is longer than 64 characters"
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return "the local part may not start or end with a dot or hold two in a row"
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c != '.' && !atext(c) {
			return "the local part may not contain " + quoteByte(c)
		}
	}
	return ""
}

// atext reports whether c is RFC 5322 §3.2.3 atext (ASCII only).
func atext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// CheckDomain checks a lower-case mail domain: ASCII letter-digit-hyphen
// labels of at most 63 characters, none starting or ending with '-', at least
// one dot, a last label not all digits. It returns an *errs.Error (code
// bad_address) saying what is wrong, or nil. The Placeholder format uses the
// same rule for every address it digests, so one domain is one string.
func CheckDomain(domain string) error {
	if why := checkDomain(domain); why != "" {
		return errs.E(errs.Invalid, "bad_address", "%s", why)
	}
	return nil
}

// checkDomain checks a lower-case domain and returns a reason if it is bad.
func checkDomain(domain string) string {
	if domain == "" {
		return "the domain (after @) is empty"
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return "the domain needs at least one dot"
	}
	for _, l := range labels {
		switch {
		case l == "":
			return "the domain has an empty label (a leading, trailing or double dot)"
		case len(l) > maxLabelLen:
			return "a domain label is longer than 63 characters"
		case l[0] == '-' || l[len(l)-1] == '-':
			return "a domain label may not start or end with '-'"
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "the domain may contain only letters, digits, '-' and '.', not " + quoteByte(c)
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "the domain's last label may not be all digits"
	}
	return ""
}

func quoteByte(c byte) string {
	return "'" + string(rune(c)) + "'"
}
