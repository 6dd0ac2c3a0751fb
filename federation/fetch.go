package federation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// FetchGrant is the verdict that an origin's authorization server reached
// on a chain when it issued a fetch token, signed into the token as its
// claim "fetch" (docs/PROTOCOL.md §10.6): the chain from the origin's own
// assertion to the token's domain verified, and the sent message it leads
// to. The origin's fetch endpoint trusts it as its own signature and
// checks no chain again (§11.3): a delivery's chain is verified once by
// the origin, however many resources the message has.
type FetchGrant struct {
	// Author is hop 1's sub: the user of the origin who sent the message;
	// UserID is theirs (IDs are never reused, so a grant outlives no
	// account).
	Author string `json:"author"`
	UserID int64  `json:"uid"`
	// BodyDigest is the Body-Digest that hop 1 signed: it names the sent
	// copy, and so the resources that may be fetched.
	BodyDigest string `json:"bdg"`
	// Hops is the length of the chain verified (1: not forwarded).
	Hops int `json:"hops"`
}

// Codes of the fetch grant's refusals at the token endpoint.
const (
	CodeNoSentCopy = "no_sent_copy" // the origin holds no sent message that the chain names
)

// GrantFetch decides what a verified chain (VerifyChain, with the origin's
// own issuer as its oldest, newest first) lets its final domain fetch: the
// sent copy of hop 1's author with hop 1's Message-ID and Body-Digest must
// be stored here, hop 1's audience must have a recipient in it, and a
// forward's first forwarder must be one of its recipients. The origin's
// stored copy is the truth here, not any placeholder a peer sends, which is
// why the token endpoint can decide without the message. A refusal is an
// *errs.Error; a store failure is returned wrapped, as it is.
func GrantFetch(ctx context.Context, r SentReader, links []Link) (FetchGrant, error) {
	if len(links) == 0 {
		return FetchGrant{}, errors.New("federation: GrantFetch needs a verified chain")
	}
	first := links[len(links)-1]
	bdg := first.Headers.Get(placeholder.HBodyDigest)
	if bdg.IsZero() || bdg.IsList() || !slices.Contains(first.Claims.EH.EHL, placeholder.HBodyDigest) {
		return FetchGrant{}, errs.E(errs.Invalid, "bad_ehl", "hop 1 signs no Body-Digest")
	}
	g := FetchGrant{Author: first.Claims.Subject, BodyDigest: bdg.String(), Hops: len(links)}
	sent, uid, err := sentCopy(ctx, r, g.Author, 0, first.Claims.MessageID, g.BodyDigest)
	if err != nil {
		return FetchGrant{}, err
	}
	g.UserID = uid
	if len(first.Claims.Audience) != 1 || !NamesDomain(sent, first.Claims.Audience[0]) {
		return FetchGrant{}, errs.E(errs.Forbidden, CodeNotARecipient, "the sent message has no recipient at hop 1's domain")
	}
	if len(links) >= 2 {
		var rcpts []string
		for _, name := range []string{placeholder.HTo, placeholder.HCc, placeholder.HBcc} {
			rcpts = append(rcpts, Addresses(sent.Header.Get(name))...)
		}
		if err := wasRecipient(links[len(links)-2], rcpts); err != nil {
			return FetchGrant{}, err
		}
	}
	return g, nil
}

// SentReader is what the origin reads to decide a fetch: its users and
// their messages.
type SentReader interface {
	UserByAddress(ctx context.Context, address string) (meta.User, error)
	MessagesByMessageID(ctx context.Context, userID int64, messageID string) ([]meta.Message, error)
}

// Fetchable checks, at the fetch endpoint, that a grant the origin signed
// still leads to a sent copy (its author may have deleted it, or the
// account) that references the resource id.
func Fetchable(ctx context.Context, r SentReader, g FetchGrant, msgid string, id resource.ID) error {
	sent, _, err := sentCopy(ctx, r, g.Author, g.UserID, msgid, g.BodyDigest)
	if err != nil {
		return err
	}
	leaves, err := sent.Leaves()
	if err != nil {
		return fmt.Errorf("the sent copy's leaves: %w", err)
	}
	for _, l := range leaves {
		if l.ID == id {
			return nil
		}
	}
	return errs.E(errs.NotFound, "not_referenced", "the body does not reference %s", id)
}

// sentCopy finds author's sent message with msgid whose body has the
// digest bdg; uid, when not 0, must be the author's ID.
func sentCopy(ctx context.Context, r SentReader, author string, uid int64, msgid, bdg string) (*placeholder.Message, int64, error) {
	none := errs.E(errs.NotFound, CodeNoSentCopy, "no sent message %s of %s with that Body-Digest", msgid, author)
	u, err := r.UserByAddress(ctx, author)
	if errors.Is(err, meta.ErrNotFound) || (err == nil && uid != 0 && u.ID != uid) {
		return nil, 0, none
	} else if err != nil {
		return nil, 0, fmt.Errorf("the author %s: %w", author, err)
	}
	copies, err := r.MessagesByMessageID(ctx, u.ID, msgid)
	if err != nil {
		return nil, 0, fmt.Errorf("the sent copies of %s: %w", msgid, err)
	}
	for _, c := range copies {
		if c.Folder != meta.Sent {
			continue
		}
		m, err := placeholder.Parse(c.Placeholder, placeholder.Limits{})
		if err != nil {
			return nil, 0, fmt.Errorf("the stored sent copy %s: %w", c.ID, err)
		}
		if placeholder.BodyDigest(m) == bdg {
			return m, u.ID, nil
		}
	}
	return nil, 0, none
}

// NamesDomain reports whether a To, Cc or Bcc recipient of m is at domain.
func NamesDomain(m *placeholder.Message, domain string) bool {
	domain = strings.ToLower(domain)
	for _, name := range []string{placeholder.HTo, placeholder.HCc, placeholder.HBcc} {
		for _, a := range Addresses(m.Header.Get(name)) {
			if domainOf(a) == domain {
				return true
			}
		}
	}
	return false
}
