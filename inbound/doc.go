// Package inbound is the receiving side of federation (docs/PROTOCOL.md §11):
// the endpoint where other domains push Placeholder Messages to this domain's
// users (Receiver, §11.2), and the endpoint from which recipient domains pull
// the External Resources of messages this domain's users sent (Origin, §11.3).
// Both trust nothing they receive: every claim of a push is checked against
// what discovery says of the sender's domain, and a fetch is served only when
// its fetch token, which this domain's authorization server issued once it
// had verified the message's chain (§10.6), names a message stored here that
// references the resource.
//
// The wire types both endpoints read (federation.Envelope, the chain and its
// verifier, federation.PathMessages and PathResources) and the pull job a
// push queues (federation.JobPull, PullPayload) are package federation's;
// this package holds the two handlers. Its tests drive them over HTTPS and
// through federation.InProcess (TestPushRefusedInProcess: each refusal
// below, and that it writes nothing).
//
// # Push: POST /federation/v1/messages
//
// Receiver checks, in the order of §11.2, and refuses with these codes (the
// kind gives the status, docs/PROTOCOL.md §7):
//
//	1  invalid_token         401  no "Authorization: DPoP <assertion>", or not a compact JWS of typ pullmail-assertion+jwt
//	   invalid_dpop_proof    401  the DPoP proof (package dpop); use_dpop_nonce when a nonce is required
//	   dpop_key_mismatch     401  the proof's key is not the assertion's cnf.jkt
//	2  from_domain_mismatch  403  sub's domain is not the placeholder's From domain (or From is unreadable)
//	   issuer_mismatch       403  iss is not the issuer discovered for that domain
//	   bad_signature         401  the signature does not verify with that issuer's JWKS, even after one refresh
//	   wrong_client          403  azp is not the mta_client_id of that domain's mailbox metadata
//	3  wrong_audience        403  aud is not this domain alone
//	   expired_assertion     401  exp missing or past, a life over 10 minutes, iat or nbf more than 60 s ahead
//	   replayed_assertion    401  the jti was seen before (meta.Once, key "assertion:ISS:JTI")
//	4  malformed_json        400  the request body is not {"placeholder": {...}, "chain": [...]}
//	   bad_chain             400  not exactly one chain element (forwarded chains are not accepted yet), or its
//	                              jwt-assertion is not the assertion presented
//	   (placeholder codes)   400  the placeholder does not parse (§2, §7), or the chain's headers do not
//	   bad_ehl               400  the assertion's ehl breaks §5.3 for a first hop
//	   eht_mismatch          400  eht differs from the chain headers', the chain headers differ from the
//	                              placeholder's, or msgid is not its Message-ID
//	   digest_mismatch       400  Body-Digest or Recipients-Digest is missing or wrong
//	   not_sent              400  the placeholder has no Date (a draft)
//	   no_local_recipient    400  no recipient at this domain
//	5  unknown_recipient     400  a recipient at this domain has no account (the message names them)
//
// Discovery failures keep their own kind (a temporary one answers 503, so
// the sender retries).
//
// Accepted, one meta.Update stores the copies through Config.Mailbox (the
// mailbox service, the one writer of mailbox rows: an inbox copy for each
// local recipient, status fetching, the placeholder with Received and
// X-Destination-Mailbox-Service-URL added, the refs to its resources and
// the envelope as pushed; the recipients' automatic forwarding rules apply
// there too) and adds a "pull" job keyed
// "pull:<Message-ID>:<Recipients-Digest>" whose payload is a federation.PullPayload
// naming every copy made. The answer is 202 {"status":"accepted"}
// (federation.PushAnswer). When
// that job key exists already, the push is a retry of a copy accepted before:
// 200 {"status":"duplicate"}, and nothing changes.
//
// # Pull: POST /federation/v1/resources/{content-id}
//
// Origin serves a resource's bytes (Range, ETag "<content-id>", through
// http.ServeContent) only when every check of §11.3 holds; every refusal is
// the same 404 not_found as for a missing resource, so that a requester
// learns nothing. The one exception is use_dpop_nonce (401 with a DPoP-Nonce
// header) when the DPoP verifier requires nonces, since a client cannot
// proceed otherwise.
package inbound
