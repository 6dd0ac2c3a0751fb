// Package mta is this domain's outbound and pulling mail transfer agent
// (docs/PROTOCOL.md §11.2, §11.3): it runs the durable "push" jobs that carry
// a sent Placeholder Message to each recipient domain, and the "pull" jobs
// that fetch a received message's External Resources from its origin.
//
// Both kinds live in the metadata store (meta.Job), so a crash loses
// nothing: a job is added in the transaction that creates the work (the
// mailbox's send calls QueueSend; inbound.Receiver queues a pull), claimed
// for a lease, and finished in one transaction with its consequences (the
// local copies' status, a delivery-status notice), after checking that the
// lease is still ours. A running job renews its lease (Config.Lease, one
// minute) every third of it, so that a long pull keeps its job while a
// worker that died loses its jobs within a minute.
//
// # Push
//
// For each attempt the MTA discovers the recipient domain's mailbox, trades
// the send grant captured at send for a fresh assertion at its own
// authorization server (§10.5) and POSTs {placeholder, chain} to the inbound
// endpoint with DPoP. 200 or 202 is done; any other 4xx but 408 and 429 is
// final; network errors, 5xx, 408 and 429 are retried with backoff until
// the job's horizon. A final failure puts a delivery-status notice from
// postmaster@DOMAIN in the author's inbox.
//
// # Pull
//
// For a pull the MTA skips the resources the domain already holds, trades
// the assertion the message arrived with for a fetch token at the origin's
// authorization server (§10.6) and POSTs each missing resource out of the
// origin's fetch endpoint, streaming it into the resource store, which
// checks its size and digest. When every resource is held the local copies
// become complete; at the horizon, failed with a reason. A cut transfer is
// fetched again from the start (no Range resume: resource.Store has no
// partial-object API).
package mta
