package apidoc

import (
	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/federation"
)

// The authorization server (docs/PROTOCOL.md §10): OAuth 2.0 with PKCE, the
// device grant, token exchange and DPoP.
var authzOps = []Op{
	{
		Method: "GET", Path: federation.PathASMetadata, ID: "asMetadata", Tags: []string{"oauth", "discovery"}, Auth: Public,
		Summary:     "Authorization server metadata",
		Description: "RFC 8414: the issuer, every endpoint below, and what they support (docs/PROTOCOL.md §10.1). Other domains find it by discovery (§11.1).",
		Responses: []Response{
			{Status: 200, Description: "The metadata.", Content: []Content{JSON[federation.ASMetadata]()}},
			{Status: 302, Description: "Reached under one of the node's own names (`pullmail serve --host`) other than the public URL's host: `Location` is this path at the public URL, the issuer (docs/PROTOCOL.md §11.1, several nodes)."},
		},
	},
	{
		Method: "GET", Path: authz.PathJWKS, ID: "asJWKS", Tags: []string{"oauth", "discovery"}, Auth: Public,
		Summary:     "The authorization server's signing keys",
		Description: "RFC 7517: the public keys that verify what the AS signs (access tokens, send grants, fetch tokens, assertions); a retired key stays until everything it signed has expired (docs/PROTOCOL.md §10.1). Cacheable for 5 minutes.",
		Responses: []Response{
			{Status: 200, Description: "The key set.", Content: []Content{{Media: "application/jwk-set+json", Schema: Ref("JWKS")}}},
		},
	},
	{
		Method: "GET", Path: authz.PathAuthorize, ID: "authorizePage", Tags: []string{"oauth"}, Auth: Public,
		Summary:     "Authorization request: the sign-in page",
		Description: "RFC 6749 §4.1.1 with PKCE (RFC 7636, S256 only): a registered client sends the user here; the answer is the sign-in form (docs/PROTOCOL.md §10.3).",
		Params:      authorizeParams("query"),
		Responses: []Response{
			{Status: 200, Description: "The sign-in page.", Content: htmlPage},
			{Status: 303, Description: "Back to `redirect_uri` with `error`, `error_description` and `state` (RFC 6749 §4.1.2.1), once the client and its redirect URI are known good."},
			{Status: 400, Description: "A page naming the problem: an unknown client or a redirect URI it did not register (never redirected).", Content: htmlPage},
		},
	},
	{
		Method: "POST", Path: authz.PathAuthorize, ID: "authorizeSubmit", Tags: []string{"oauth"}, Auth: Public,
		Summary:     "Authorization request: sign in",
		Description: "The sign-in form's submission: the authorization request's parameters again, the user's credentials and the form's CSRF token. Success redirects to the client with a one-time code (docs/PROTOCOL.md §10.3).",
		Body: &Body{Content: []Content{{Media: "application/x-www-form-urlencoded", Schema: Form(append(authorizeFields(),
			FormField{Name: "username", Description: "The user's address.", Required: true},
			FormField{Name: "password", Required: true},
			FormField{Name: "csrf", Description: "The form's CSRF token, matched to its cookie.", Required: true})...)}}},
		Responses: []Response{
			{Status: 303, Description: "To `redirect_uri` with `code`, `state` and `iss` (RFC 9207), or with `error` (RFC 6749 §4.1.2)."},
			{Status: 400, Description: "The form again, or a page naming a bad request.", Content: htmlPage},
			{Status: 401, Description: "The form again: wrong credentials.", Content: htmlPage},
			{Status: 403, Description: "The form again: it expired (its CSRF token no longer matches).", Content: htmlPage},
			{Status: 429, Description: "The form again: too many failed sign-ins; wait.", Content: htmlPage},
			{Status: 503, Description: "The form again: the password cannot be checked now.", Content: htmlPage},
		},
	},
	{
		Method: "POST", Path: authz.PathToken, ID: "token", Tags: []string{"oauth"}, Auth: Public,
		Summary: "Token endpoint",
		Description: "RFC 6749 §3.2 with every grant this server has (docs/PROTOCOL.md §10.2–§10.7): `authorization_code` (with the PKCE verifier), `refresh_token`, `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4), and `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693): an MTA's assertion for a send or a forward, another domain's MTA's fetch token. " +
			"Parameters go in the body, never the URL, each at most once. A confidential client authenticates with `private_key_jwt` (RFC 7523), a public one by `client_id` alone. A `DPoP` proof (RFC 9449) binds the token to its key; token exchange demands one.",
		Params: []Param{dpopProof(false)},
		Body: &Body{Content: []Content{{Media: "application/x-www-form-urlencoded", Schema: Form(append(clientAuthFields(),
			FormField{Name: "grant_type", Required: true, Enum: []string{"authorization_code", "refresh_token", authz.GrantDeviceCode, federation.GrantTokenExch}},
			FormField{Name: "code", Description: "authorization_code: the code the redirect carried."},
			FormField{Name: "redirect_uri", Description: "authorization_code: the redirect URI of the authorization request."},
			FormField{Name: "code_verifier", Description: "authorization_code: the PKCE verifier (RFC 7636 §4.5)."},
			FormField{Name: "refresh_token", Description: "refresh_token: the refresh token."},
			FormField{Name: "device_code", Description: "device_code: the device code of the device authorization answer."},
			FormField{Name: "scope", Description: "The scopes asked for: `mail`, `internet_mail`, `fetch`."},
			FormField{Name: "subject_token", Description: "token-exchange: the send grant, or the other domain's assertion (docs/PROTOCOL.md §10.5–§10.7)."},
			FormField{Name: "subject_token_type", Description: "token-exchange: the subject token's type (RFC 8693 §3).", Enum: []string{federation.TokenTypeAccess, federation.TokenTypeJWT}},
			FormField{Name: "requested_token_type", Description: "token-exchange: what is asked for (RFC 8693 §3)."},
			FormField{Name: "audience", Description: "token-exchange: the domain the assertion is for."},
			FormField{Name: "resource", Description: "token-exchange: the resource the token is for."},
			FormField{Name: "envelope_headers", Description: "token-exchange: the envelope headers (JSON) the assertion signs (docs/PROTOCOL.md §5.3)."},
			FormField{Name: "ehl", Description: "token-exchange: the names of the envelope headers, in order (§5.3)."},
			FormField{Name: "chain", Description: "token-exchange for a fetch token: the chain as pushed, newest hop first, its oldest assertion the subject_token (JSON; one element for a message not forwarded; docs/PROTOCOL.md §10.6, §12.4)."},
		)...)}}},
		Responses: []Response{
			{Status: 200, Description: "The token.", Content: []Content{JSON[authz.TokenResponse]()}},
			{Status: 400, Description: "`invalid_request`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`, `authorization_pending` and `expired_token` (device grant, RFC 8628 §3.5), `invalid_dpop_proof`, `use_dpop_nonce` (with a `DPoP-Nonce` header) (RFC 6749 §5.2, RFC 9449 §8; docs/PROTOCOL.md §10.9); `invalid_request` also for a body over 256 KiB.", Content: oauthErrorJSON,
				Headers: map[string]Header{"DPoP-Nonce": {Ref: "DPoPNonce"}}},
			{Status: 401, Description: "`invalid_client`: the client is unknown or its authentication failed.", Content: oauthErrorJSON},
			{Status: 500, Description: "`server_error`.", Content: oauthErrorJSON},
			{Status: 503, Description: "`temporarily_unavailable`: retry.", Content: oauthErrorJSON},
		},
	},
	{
		Method: "POST", Path: authz.PathRevoke, ID: "revoke", Tags: []string{"oauth"}, Auth: Public,
		Summary:     "Token revocation",
		Description: "RFC 7009: revokes a refresh token (and what it issued) of the authenticating client. An unknown token answers 200 too.",
		Body: &Body{Content: []Content{{Media: "application/x-www-form-urlencoded", Schema: Form(append(clientAuthFields(),
			FormField{Name: "token", Description: "The token to revoke.", Required: true},
			FormField{Name: "token_type_hint"})...)}}},
		Responses: []Response{
			{Status: 200, Description: "Revoked (or never known)."},
			{Status: 400, Description: "`invalid_request`: no token, or one issued to another client.", Content: oauthErrorJSON},
			{Status: 401, Description: "`invalid_client`.", Content: oauthErrorJSON},
			{Status: 503, Description: "`temporarily_unavailable`: retry.", Content: oauthErrorJSON},
		},
	},
	{
		Method: "POST", Path: authz.PathDeviceAuthz, ID: "deviceAuthorization", Tags: []string{"oauth"}, Auth: Public,
		Summary:     "Device authorization",
		Description: "RFC 8628 §3.1: a device without a browser (`pullmail login`) asks for a user code to show and a device code to poll the token endpoint with (docs/PROTOCOL.md §10.3).",
		Body: &Body{Content: []Content{{Media: "application/x-www-form-urlencoded", Schema: Form(append(clientAuthFields(),
			FormField{Name: "scope", Description: "The scopes asked for; default `mail`."})...)}}},
		Responses: []Response{
			{Status: 200, Description: "The codes.", Content: []Content{JSON[authz.DeviceResponse]()}},
			{Status: 400, Description: "`invalid_request`, `invalid_scope`, `unauthorized_client`.", Content: oauthErrorJSON},
			{Status: 401, Description: "`invalid_client`.", Content: oauthErrorJSON},
			{Status: 503, Description: "`temporarily_unavailable`: retry.", Content: oauthErrorJSON},
		},
	},
	{
		Method: "GET", Path: authz.PathDevice, ID: "devicePage", Tags: []string{"oauth"}, Auth: Public,
		Summary:     "Device sign-in page",
		Description: "Where the user enters the user code (RFC 8628 §3.3), prefilled from `user_code`.",
		Params:      []Param{{Name: "user_code", In: "query", Description: "The code the device shows (`verification_uri_complete`).", Schema: Schema{"type": "string"}}},
		Responses:   []Response{{Status: 200, Description: "The form.", Content: htmlPage}},
	},
	{
		Method: "POST", Path: authz.PathDevice, ID: "deviceSubmit", Tags: []string{"oauth"}, Auth: Public,
		Summary:     "Device sign-in",
		Description: "The user code with the user's credentials: the device's next poll of the token endpoint gets its tokens.",
		Body: &Body{Content: []Content{{Media: "application/x-www-form-urlencoded", Schema: Form(
			FormField{Name: "user_code", Required: true}, FormField{Name: "username", Required: true},
			FormField{Name: "password", Required: true}, FormField{Name: "csrf", Required: true})}}},
		Responses: []Response{
			{Status: 200, Description: "Signed in: the device may go on.", Content: htmlPage},
			{Status: 400, Description: "The form again: an unknown or expired user code.", Content: htmlPage},
			{Status: 401, Description: "The form again: wrong credentials.", Content: htmlPage},
			{Status: 403, Description: "The form again: it expired (CSRF).", Content: htmlPage},
			{Status: 429, Description: "The form again: too many failed sign-ins; wait.", Content: htmlPage},
			{Status: 503, Description: "A page: try again later.", Content: htmlPage},
		},
	},
}

var authzTypes = []Type{
	{Go: TypeOf[federation.ASMetadata](), Name: "ASMetadata", Description: "RFC 8414 §2 authorization server metadata."},
	{Go: TypeOf[authz.TokenResponse](), Name: "TokenResponse", Description: "RFC 6749 §5.1; for token exchange RFC 8693 §2.2.1 (`issued_token_type`, `token_type` `N_A` for an assertion).",
		Fields: map[string]Schema{"token_type": {"description": "`DPoP` for a DPoP-bound token, `Bearer` otherwise, `N_A` for an assertion."}}},
	{Go: TypeOf[authz.DeviceResponse](), Name: "DeviceAuthorization", Description: "RFC 8628 §3.2."},
	{Go: TypeOf[authz.OAuthError](), Name: "OAuthError", Description: "RFC 6749 §5.2: the authorization server's errors.",
		Fields: map[string]Schema{"error": {"pattern": "^[a-z][a-z0-9_]*$"}}},
}

var oauthErrorJSON = []Content{JSON[authz.OAuthError]()}

var htmlPage = []Content{{Media: "text/html", Schema: Schema{"type": "string"}}}

func authorizeFields() []FormField {
	return []FormField{
		{Name: "response_type", Required: true, Enum: []string{"code"}},
		{Name: "client_id", Required: true},
		{Name: "redirect_uri", Description: "Exactly a registered redirect URI (a loopback IP literal matches with any port, RFC 8252 §7.3).", Required: true},
		{Name: "state"},
		{Name: "code_challenge", Description: "The PKCE challenge, base64url SHA-256 of the verifier.", Required: true},
		{Name: "code_challenge_method", Required: true, Enum: []string{"S256"}},
		{Name: "scope", Description: "Default `mail`."},
	}
}

func authorizeParams(in string) []Param {
	var out []Param
	for _, f := range authorizeFields() {
		s := Schema{"type": "string"}
		if len(f.Enum) > 0 {
			s["enum"] = f.Enum
		}
		out = append(out, Param{Name: f.Name, In: in, Description: f.Description, Required: f.Required, Schema: s})
	}
	return out
}

// clientAuthFields are how a client names and authenticates itself
// (docs/PROTOCOL.md §10.1): client_id alone for a public client,
// private_key_jwt for a confidential one.
func clientAuthFields() []FormField {
	return []FormField{
		{Name: "client_id", Description: "The client; with `private_key_jwt` it may be left to the assertion's `iss`."},
		{Name: "client_assertion_type", Enum: []string{"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}},
		{Name: "client_assertion", Description: "A JWT (typ `JWT`) signed by a key of the client's JWKS (RFC 7523 §2.2)."},
	}
}

// dpopProof is the DPoP request header (RFC 9449 §4).
func dpopProof(required bool) Param {
	return Param{Name: "DPoP", In: "header", Required: required, Description: "A DPoP proof JWT (typ `dpop+jwt`) for this request's method and URL.", Schema: Schema{"type": "string"}}
}
