package federation

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// Paths of the federation endpoints, under a mailbox's base URL
// (docs/PROTOCOL.md §11.2, §11.3).
const (
	PathMessages  = "/federation/v1/messages"
	PathResources = "/federation/v1/resources"
)

// PathASMetadata is where a domain's authorization server publishes its
// metadata (RFC 8414 §3), under its issuer URL: discovery reads it
// (docs/PROTOCOL.md §11.1), the authorization server serves it.
const PathASMetadata = "/.well-known/oauth-authorization-server"

// Scopes of the Cross-Domain Authorization Grant (docs/PROTOCOL.md §10.4).
const (
	ScopeInternetMail = "internet_mail" // an assertion for a push
	ScopeFetch        = "fetch"         // fetching one message's resources
)

// Token types (RFC 8693 §3), the token exchange grant and the client
// assertion type (RFC 7523) of the token requests between domains
// (docs/PROTOCOL.md §10.5–§10.7).
const (
	TokenTypeAccess   = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT      = "urn:ietf:params:oauth:token-type:jwt"
	GrantTokenExch    = "urn:ietf:params:oauth:grant-type:token-exchange"
	ClientAssertionJB = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// TypAssertion is the JWT type (RFC 8725 §3.11) of the Cross-Domain
// Authorization Grant's assertions, so that no other token passes for one.
const TypAssertion = "pullmail-assertion+jwt"

// TypAccessToken is the JWT type (RFC 8725 §3.11) of access tokens (RFC
// 9068): the mailbox API's and the fetch tokens an origin's authorization
// server issues for its fetch endpoint (docs/PROTOCOL.md §10.6). It lives
// here, with the other wire facts, so that the fetch endpoint (package
// inbound) checks it without importing the authorization server.
const TypAccessToken = "at+jwt"

// Claims are the claims of the tokens a domain's authorization server
// signs: the assertions and fetch tokens other domains verify, and the
// send grants and access tokens only it reads.
type Claims struct {
	keys.Claims
	// UserID is the ID of the user the token acts for (sub names their
	// address): IDs are never reused, so a token minted before the user
	// was deleted does not open a new account at the same address.
	UserID int64 `json:"uid,omitempty"`
	// Family names the grant family; revoking it stops the token.
	Family string `json:"fam,omitempty"`
	// MessageID binds a send grant, an assertion or a fetch token to one
	// message.
	MessageID string `json:"msgid,omitempty"`
	// RecipientDomain is the domain a fetch token was issued to.
	RecipientDomain string `json:"rcpt_domain,omitempty"`
	// EH is the assertion's envelope-headers binding (docs/PROTOCOL.md §5.3).
	EH *EnvelopeBinding `json:"eh,omitempty"`
	// Hop counts an assertion's hops (1: from the author's domain); Path
	// lists the domains it passed, for loop detection; Prev is the
	// previous hop's JWT-Assertion-Digest.
	Hop  int      `json:"hop,omitempty"`
	Path []string `json:"path,omitempty"`
	Prev string   `json:"prev,omitempty"`
	// Fetch is a fetch token's verdict on the chain it was traded for
	// (docs/PROTOCOL.md §10.6).
	Fetch *FetchGrant `json:"fetch,omitempty"`
}

// EnvelopeBinding is the eh claim: eht over the headers named by ehl.
type EnvelopeBinding struct {
	EHT string   `json:"eht"`
	EHL []string `json:"ehl"`
}

// HasScope reports whether the space-separated scope holds want.
func HasScope(scope, want string) bool {
	for _, s := range strings.Fields(scope) {
		if s == want {
			return true
		}
	}
	return false
}

// ASMetadata is the RFC 8414 document of a domain's authorization server.
type ASMetadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	DeviceAuthorizationEndpoint       string   `json:"device_authorization_endpoint"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgs      []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	DPoPSigningAlgValuesSupported     []string `json:"dpop_signing_alg_values_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	AuthorizationResponseIssParameter bool     `json:"authorization_response_iss_parameter_supported"`

	// The revocation endpoint authenticates clients as the token endpoint
	// does: without these members RFC 8414 §2 means client_secret_basic,
	// which this server refuses.
	RevocationEndpointAuthMethods     []string `json:"revocation_endpoint_auth_methods_supported"`
	RevocationEndpointAuthSigningAlgs []string `json:"revocation_endpoint_auth_signing_alg_values_supported"`
}

// Envelope is the body of a push and of a fetch (docs/PROTOCOL.md §11.2,
// §11.3): the Placeholder Message exactly as sent and the chain of signed
// envelope headers, newest hop first. It is also what a received copy keeps
// of how it arrived (meta.Tx.SetEnvelope), for a forward.
type Envelope struct {
	Placeholder json.RawMessage `json:"placeholder"`
	Chain       []ChainElement  `json:"chain"`
}

// Encode returns the envelope as a push or fetch body: the placeholder goes
// out as the exact bytes held (no HTML escaping).
func (e Envelope) Encode() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return bytes.TrimSpace(b.Bytes()), nil
}

// MaxChain bounds the number of elements of a chain that is read at all.
const MaxChain = 8

// ParseEnvelope reads a push or fetch body of at most max bytes. It refuses
// anything but one JSON object with the two members, a non-empty chain of
// at most MaxChain elements, each with headers and an assertion. It does not
// parse the placeholder or the headers: their checks come later, in the order
// the protocol gives. Errors are *errs.Error of kind Invalid (code
// malformed_json) or TooLarge (document_too_large).
func ParseEnvelope(data []byte, max int) (*Envelope, error) {
	if len(data) > max {
		return nil, errs.E(errs.TooLarge, placeholder.CodeDocumentTooLarge, "the request body is larger than %d bytes", max)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e Envelope
	if err := dec.Decode(&e); err != nil {
		return nil, errs.Wrap(err, errs.Invalid, placeholder.CodeMalformedJSON, "the body is not a {placeholder, chain} object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errs.E(errs.Invalid, placeholder.CodeMalformedJSON, "data after the JSON object")
	}
	if len(e.Placeholder) == 0 || e.Placeholder[0] != '{' {
		return nil, errs.E(errs.Invalid, placeholder.CodeMalformedJSON, "placeholder must be an object")
	}
	if len(e.Chain) == 0 || len(e.Chain) > MaxChain {
		return nil, errs.E(errs.Invalid, placeholder.CodeMalformedJSON, "chain must hold 1 to %d elements", MaxChain)
	}
	for i, c := range e.Chain {
		if len(c.Headers) == 0 || c.Headers[0] != '{' || c.Assertion == "" {
			return nil, errs.E(errs.Invalid, placeholder.CodeMalformedJSON, "chain element %d needs headers and jwt-assertion", i)
		}
	}
	return &e, nil
}

// PushAnswer is the body of a push's success (docs/PROTOCOL.md §11.2):
// 202 PushAccepted, or 200 PushDuplicate for a retry of a copy accepted
// before.
type PushAnswer struct {
	Status string `json:"status"`
}

// The statuses of a PushAnswer.
const (
	PushAccepted  = "accepted"
	PushDuplicate = "duplicate"
)

// JobPull is the kind of the job a push queues at the receiving domain,
// whose payload is a PullPayload.
const JobPull = "pull"

// PullPayload is the payload of the pull job a push queues: everything the
// pull runner needs to fetch the message's resources from the origin
// (docs/PROTOCOL.md §11.3) and to update the local copies.
type PullPayload struct {
	Origin      string          `json:"origin"`      // the From domain
	MessageID   string          `json:"message_id"`  // with angle brackets
	Placeholder json.RawMessage `json:"placeholder"` // exactly as received, without the headers added here
	Chain       []ChainElement  `json:"chain"`       // as pushed
	Messages    []MessageRef    `json:"messages"`    // the inbox copies made
	Resources   []meta.Ref      `json:"resources"`   // every resource the placeholder names, once each
	// Missing lists those not held when the push was accepted (nil when
	// the receiver has no resource store: then all of them may be missing).
	Missing []resource.ID `json:"missing,omitempty"`
}

// MessageRef names one stored copy.
type MessageRef struct {
	UserID int64  `json:"user_id"`
	ID     string `json:"id"`
}
