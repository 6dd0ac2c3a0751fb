// Package federation is the wire protocol between Pullmail domains
// (docs/PROTOCOL.md §10–§12), written once for both sides: what travels
// and how it is checked, with no server in it.
//
//   - the push body (Envelope, ParseEnvelope), the push's answer
//     (PushAnswer) and the endpoints' paths (PathMessages, PathResources);
//   - the chain of signed envelope headers (ChainElement) and its
//     verification (VerifyChain, CheckChainMessage; §12.3), the claims of
//     the assertions and fetch tokens (Claims), their JWT types, scopes and
//     the token-exchange URNs (§10);
//   - the fetch grant, the origin's verdict on a chain signed into the fetch
//     token (FetchGrant: GrantFetch decides it, Fetchable checks it at each
//     fetch; §10.6, §11.3);
//   - the authorization server's metadata document (ASMetadata, RFC 8414),
//     as discovery reads it and the authorization server serves it;
//   - the MTA's client key for private_key_jwt (ClientKey, §10.1);
//   - the pull job a push queues (JobPull, PullPayload, MessageRef);
//   - the per-user forwarding policy that the authorization server and the
//     mailbox both enforce (ForwardingDenied, AutoForwardAllowed, §12.6).
//
// The receiving side (package inbound), the sending side (package mta), the
// authorization server (package authz) and the mailbox import it; it
// imports none of them, only the formats and stores below them
// (placeholder, keys, meta, resource).
package federation
