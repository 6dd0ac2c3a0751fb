// Package mta is this domain's outbound and pulling mail transfer agent
// (docs/PROTOCOL.md §11.2, §11.3): it runs the durable "push" jobs that carry
// a sent Placeholder Message to each recipient domain, and the "pull" jobs
// that fetch a received message's External Resources from its origin.
//
// Both kinds live in the metadata store (meta.Job), so a crash loses
// nothing: a job is added in the transaction that creates the work (the
// mailbox's send calls QueueSend, with the send grant it had signed by
// SendGrant before the transaction; inbound.Receiver queues a pull), claimed
// for a lease, and finished in one transaction with its consequences (the
// local copies' status, a delivery-status notice), after checking that the
// lease is still ours. The MTA writes no mailbox row itself: those
// consequences go through Config.Mailbox (the mailbox service, the one
// writer of mailbox rows), inside the job's transaction. A running job renews its lease (Config.Lease, one
// minute) every third of it, so that a long pull keeps its job while a
// worker that died loses its jobs within a minute.
//
// # Several nodes
//
// Every node of a domain runs an MTA on the shared stores, named by
// Config.Node. Claims skip each other's jobs (meta.JobQueue.ClaimJobs); a
// node that dies loses its jobs to the others when their leases end, and a
// node that starts again hands back at once the jobs its previous run held
// (ReleaseJobs), never another node's. Pulls of one resource digest are
// serialised across the nodes by a lock in the database (meta.Locks,
// "pull:<content-id>", leased and renewed like a job), so that the domain
// fetches each digest once: a node that finds it taken waits, and takes the
// resource from the store when the other node has put it there. Pull
// staging (Config.Staging) is per node: a pull taken over after a node
// died starts from byte 0.
//
// Every request the MTA makes (a push, a token exchange, a fetch) goes
// through a federation.Transport (Config.Transport): federation.HTTPS
// between servers, federation.InProcess in tests that run domains in one
// process without sockets. The MTA signs each request's DPoP proof and
// answers a use_dpop_nonce challenge; the transport only carries it. The
// bodies and the pull job's payload are federation's wire types: the MTA
// does not import the receiving side (package inbound).
//
// # Push
//
// For each attempt the MTA discovers the recipient domain's mailbox, trades
// the send grant captured at send for a fresh assertion at its own
// authorization server (§10.5) and POSTs {placeholder, chain} to the inbound
// endpoint with DPoP. 200 or 202 is done; any other 4xx but 408 and 429 is
// final; network errors, 5xx, 408 and 429 are retried with backoff. A final
// failure puts a delivery-status notice from postmaster@DOMAIN in the
// author's inbox.
//
// # Retries and the horizon
//
// A temporary failure queues the job again after Config.Backoff, but never
// later than its horizon (Job.Expires: its creation plus Config.Horizon, or
// inbound's PullHorizon), so that one attempt is made at the horizon; a job
// gives up only when an attempt at or past it fails (docs/PROTOCOL.md
// §11.4). A success with a domain makes the queued jobs for that domain
// (pushes to it, pulls from it) due at once: it is back, and each would
// otherwise wait out its own delay. The MTA keeps those jobs in memory by
// domain and rebuilds the index from the store when Run or RunDue starts.
// Every failure that gives up has a reason: refused, horizon, no_domain or
// invalid (Reason*), counted in pullmail_mta_failures_total.
//
// # Pull
//
// For a pull the MTA skips the resources the domain already holds, trades
// the chain the message arrived with for a fetch token at the origin's
// authorization server (§10.6), which verifies it once for the whole pull,
// and GETs each missing resource out of the origin's fetch endpoint with
// that token alone into the resource store, which checks its size
// and digest. A transfer cut midway resumes with "Range: bytes=N-" in the
// same attempt (up to MaxResumes times). A resource of Config.StageAbove
// bytes or more goes through Config.Staging first (the server's
// DATA/pulls, an upload.FS keyed by the resource's digest): the bytes are
// counted there durably as they arrive, so that an attempt stopped by a
// restart, clean or not, resumes with Range (and If-Range: "<content-id>")
// from the bytes staged; an origin that answers 200 or 416 instead of 206 is
// fetched from the start. The staged bytes are committed to the resource
// store once whole and their digest matches. When every resource is held
// the local copies become complete; when the pull gives up, failed, with a
// status_reason that starts with the reason's code ("refused: a.test
// refused to serve …"). A 4xx from the origin but 401, 408 and 429 (the
// resource is not found, gone, refused) gives up at once; 5xx and network
// errors are retried.
package mta
