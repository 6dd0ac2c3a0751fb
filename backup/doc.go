// Package backup copies a domain's two stores into two others through the
// seams (meta.Store with its optional meta.Exporter and meta.Loader,
// resource.Store), whatever their kinds: it is pullmail migrate (SQLite and
// files to PostgreSQL and S3, or any mix: Copy), pullmail backup (a running
// domain into a backup directory, incrementally: Backup) and pullmail
// restore (back from one: Restore).
//
// # A copy
//
// Copy reads the source in one View, a consistent snapshot, and writes the
// target in small transactions, each idempotent: a row already in the
// target (a user by ID, a message by ID, a token or grant by hash, a job by
// key, a resource by digest and size) is left as it is. So a copy that was
// interrupted is resumed by running it again, and nothing is duplicated.
// Resources are streamed, four at a time (Options.Workers), each in constant
// memory and each Put checked
// against its digest by the target store as it writes, before the messages
// that name them, so that no message is ever in the target before its
// bytes. The change feed starts afresh on the target (meta.Loader.ResetFeed):
// every cursor of the source answers cursor gone there, so its clients
// list again (messages keep their IDs, so a client's local copies still
// match). The search index is not copied: the server indexes the copied
// messages again (meta.Reader.Unindexed). Not copied either: the replay
// cache (meta.Once), idempotency records, locks and garbage collection's
// condemnations, all short-lived; running jobs are copied queued, with no
// holder.
//
// After the copy, Verify (Options.Verify) reads both stores again, the
// source in the same snapshot, and compares every user, domain setting,
// per-user setting, token, OAuth client, grant, revoked family, message
// (every field, its placeholder, its references and its envelope), upload
// and job, and checks every referenced resource in the target: read whole
// and hashed with VerifyBytes, by size otherwise.
//
// # A backup directory
//
//	manifest.json              written last, atomically: names the snapshot, lists the resources
//	meta-<UTC time>.db         the metadata snapshot, a SQLite database (meta/sqlite's schema)
//	resources/                 a plain resource/fsstore: every resource of every backup kept
//	lock                       held by pullmail backup and restore while they run
//
// The manifest (Manifest) holds the format ("pullmail-backup 1"), when the
// backup completed, the source stores (no passwords), the snapshot's file
// name with its size and SHA-256, every resource the snapshot references
// with its size (ordered by ID), and the copy's Summary.
//
// Consistency: the snapshot is one read transaction of the source's
// metadata store (SQLite: a WAL read transaction; PostgreSQL: REPEATABLE
// READ), so it holds each message with all of its rows and every resource
// row as of one instant, while the server goes on writing. Resources are
// immutable and named by their digest, so copying them after the instant
// copies exactly the bytes the snapshot names; one that garbage collection
// removed meanwhile (its last message deleted after the instant) makes the
// attempt fail with ErrSourceChanged, and Backup takes a new snapshot
// (incremental, so only what changed is copied again). The new snapshot is
// written as meta-<time>.db.partial, verified, then written out as one file
// (VACUUM INTO meta-<time>.db, synced); only then does manifest.json name
// it, and only then are older snapshots removed. A backup interrupted at any point therefore leaves the
// previous backup whole: the previous manifest, its snapshot, and the
// resources, to which a backup only adds.
//
// Incremental: a resource that resources/ holds already with the same
// digest and size is not copied again (Summary.ResourcesCopied and
// BytesCopied count what a run copied). Resources that no snapshot
// references any more stay; remove the directory to start over.
//
// Restore first checks the backup whole (Check): the manifest and its
// format, the snapshot's size and SHA-256, every listed resource read and
// hashed, and that the snapshot references nothing unlisted. Any fault is
// an ErrDamaged naming it, and nothing is written. It then copies a scratch
// copy of the snapshot (the backup itself is only read) and the resources
// into the target, and verifies them as Copy does, every resource read
// back and hashed.
package backup
