package authz

// Exported names of the answers the endpoints write, for the generated
// OpenAPI document (package apidoc reflects their JSON shapes).
type (
	TokenResponse  = tokenResponse  // the token endpoint's success (RFC 6749 §5.1, RFC 8693 §2.2.1)
	DeviceResponse = deviceResponse // the device authorization answer (RFC 8628 §3.2)
	OAuthError     = oauthError     // every error of the AS's JSON endpoints (RFC 6749 §5.2)
)
