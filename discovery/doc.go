// Package discovery finds another domain's services from its name alone:
// its authorization server (AS) and its mailbox service, through DNS SRV
// records, HTTPS metadata documents and JWK Sets (seed 004 "Service
// Discovery", docs/PROTOCOL.md §9). It is the only way Pullmail learns
// anything of a remote domain, so it trusts nothing that it fetches.
//
// # Records and documents
//
//	_federizer._as._tcp.DOMAIN SRV → https://TARGET:PORT/.well-known/oauth-authorization-server (RFC 8414)
//	                                 → jwks_uri (RFC 7517, via keys.ParseJWKS)
//	_federizer._rs._tcp.DOMAIN SRV → https://TARGET:PORT/.well-known/pullmail-mailbox (MailboxMetadata)
//
// SRV records are tried in RFC 2782 order: lowest priority first, then a
// weighted random choice within a priority; the next target is tried when
// one fails with a temporary error (it cannot be reached, its TLS
// handshake fails, it times out or answers 5xx). A definitive answer (a bad
// document, an issuer mismatch, a private address) stops the search. No
// record fails closed (no_srv_record); a sole target "." means that the
// domain runs no such service (service_unavailable).
//
// # The redirect service (seed 004 Note 1)
//
// An SRV record names a host and port, never a path, so the SRV target may
// answer the well-known request with one redirect (301, 302, 303, 307,
// 308) to where the service really lives. The redirect is followed once,
// only to an https URL without a query or user info, on any host (the
// seed's example redirects as1.example.com to example.com/as1; the SRV
// target is the domain's own choice, reached over verified TLS, so its
// redirect says no more than its SRV record could). The Location maps to
// the service's base URL thus:
//
//	https://H/P/.well-known/oauth-authorization-server  → base https://H/P (a path-preserving redirect)
//	https://H/.well-known/oauth-authorization-server/P  → base https://H/P (the RFC 8414 §3.1 form)
//	https://H/P                                          → base https://H/P (a redirect to the base itself)
//
// and the document is fetched from the first two as they are, for the
// third from base + "/.well-known/oauth-authorization-server" (likewise
// with "/.well-known/pullmail-mailbox"). That fetch follows no further
// redirect. The document must then name exactly that base: the metadata's
// issuer (RFC 8414 §3.3), the mailbox document's url. Without a redirect
// the base is https://TARGET:PORT (https://TARGET for port 443).
//
// Every other fetch (the JWKS) follows no redirect at all. The jwks_uri and
// token_endpoint, and the mailbox document's endpoints, must be https URLs
// on the base's host and port.
//
// # Limits
//
// Every fetch: verified TLS against Config.RootCAs (never skipped), at most
// 64 KiB of body, a 10 second timeout for the whole exchange, no proxy.
// Every address dialled is checked: loopback, RFC 1918, link-local
// (169.254.0.0/16, including the cloud metadata address), ULA, CGNAT,
// unspecified and multicast addresses are refused unless
// Config.AllowPrivate (tests, the local sandbox). The check is made on the
// address actually dialled, so DNS rebinding does not pass it.
//
// # Caches
//
// Authorities and mailboxes are cached per domain for min(Cache-Control
// max-age of the documents, Config.MaxTTL), at least a minute: Go's
// resolver does not expose the SRV TTL, so MaxTTL (default 1 hour) stands
// for it. no-store and no-cache are not honoured (our own AS serves its
// metadata with no-store), so that a burst of deliveries does not refetch.
// Concurrent lookups of one domain share one fetch. Failures are not
// cached. RefreshKeys refetches a domain's JWKS when a signature names an
// unknown kid, at most once a minute per domain.
//
// # MTA-STS
//
// STS (mtasts.go) finds SMTP domains' MTA-STS policies (RFC 8461) for the
// MTA: the _mta-sts.DOMAIN TXT record through the MTA's resolver, the
// policy from https://mta-sts.DOMAIN/.well-known/mta-sts.txt over the same
// client as every other fetch (verified TLS, no redirect, no proxy, the
// private-address check) with a one-minute timeout and text/plain only,
// cached in memory until its max_age and while the record's id stays
// (docs/PROTOCOL.md §13.10.1).
//
// # Errors
//
// Errors are *errs.Error. Kind Temporary (a queue retries): dns_failed,
// fetch_failed. Kind NotFound: no_srv_record, service_unavailable. Kind
// Invalid: bad_domain, bad_client_id, private_target, bad_redirect,
// bad_metadata, issuer_mismatch, bad_mailbox_metadata, domain_mismatch,
// invalid_jwks. Kind TooLarge: response_too_large.
package discovery
