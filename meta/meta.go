// Package meta holds a domain's metadata: users, tokens, the messages in each
// user's folders, the references from messages and uploads to resources, and
// the per-user change log that the sync protocol reads.
//
// A Store is transactional: every write goes through Update, which runs a
// function in one transaction that commits entirely or not at all. That is what
// makes a send all-or-nothing (docs/PROTOCOL.md §Send) and what lets later
// parts (the outbound queue) join the same commit. Update is serializable and
// may run its function more than once (see Store.Update for the contract).
//
// Implementations: meta/sqlite (embedded default; writes serialised in one
// process), meta/postgres (several processes and nodes on one PostgreSQL
// database) and meta/memstore (in memory, for unit tests). Every
// implementation runs meta/metatest.
package meta

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pullmail/pullmail/resource"
)

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("meta: not found")

// ErrExists is returned when an insert would duplicate a unique row
// (a user's address, a message's ID).
var ErrExists = errors.New("meta: already exists")

// ErrCursorGone is returned by Changes when the cursor is older than the
// oldest change still kept: the client must resynchronise from a listing.
var ErrCursorGone = errors.New("meta: cursor too old")

// Folder is one of a user's message folders.
type Folder string

// The system folders. Archive, Junk and Requests hold what the user (or,
// later, pollution control) moved there; Trash holds deleted messages for
// TrashRetention, each with the folder it came from (Message.TrashedFrom)
// so that a restore puts it back.
const (
	Inbox    Folder = "inbox"
	Sent     Folder = "sent"
	Drafts   Folder = "drafts"
	Archive  Folder = "archive"
	Trash    Folder = "trash"
	Junk     Folder = "junk"
	Requests Folder = "requests"
)

// Folders lists the system folders in the order a client shows them.
var Folders = []Folder{Inbox, Drafts, Sent, Archive, Requests, Junk, Trash}

// TrashRetention is how long a message stays in Trash before the server
// purges it for good.
const TrashRetention = 30 * 24 * time.Hour

// System reports whether f is one of the system folders (Folders).
func (f Folder) System() bool { return slices.Contains(Folders, f) }

// MaxFolderName is the longest user folder name, in characters.
const MaxFolderName = 64

// Valid reports whether f can name a folder: a system folder, or a user
// folder name (UserFolderName). Whether the user has that folder is the
// mailbox's to check; the store keeps any valid name.
func (f Folder) Valid() bool { return f.System() || UserFolderName(string(f)) == nil }

// UserFolderName checks a name for a folder of the user's own: 1 to
// MaxFolderName characters of valid UTF-8, no control or format characters
// (a bidi override would disguise it), no '/' (kept for nesting), no
// leading or trailing space, and no system folder's name in any case
// ("Inbox" would be confused with inbox). The error says which rule.
func UserFolderName(name string) error {
	switch {
	case name == "":
		return errors.New("a folder name is not empty")
	case !utf8.ValidString(name):
		return errors.New("a folder name is UTF-8")
	case utf8.RuneCountInString(name) > MaxFolderName:
		return fmt.Errorf("a folder name has at most %d characters", MaxFolderName)
	case strings.TrimSpace(name) != name:
		return errors.New("a folder name neither starts nor ends with a space")
	case strings.ContainsRune(name, '/'):
		return errors.New("a folder name has no '/'")
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("a folder name has no control or format character (%U)", r)
		}
	}
	for _, f := range Folders {
		if strings.EqualFold(name, string(f)) {
			return fmt.Errorf("%q is a system folder's name", name)
		}
	}
	return nil
}

// Status is where a message is in its life.
type Status string

const (
	StatusDraft    Status = "draft"    // in drafts, mutable
	StatusSent     Status = "sent"     // in sent: Date set, immutable
	StatusFetching Status = "fetching" // received, resources being pulled
	StatusComplete Status = "complete" // received, every resource held locally
	StatusFailed   Status = "failed"   // received, a pull failed for good (see StatusReason)
)

// User is an account of the domain.
type User struct {
	ID           int64
	Address      string // normalised: see account.NormalizeAddress
	PasswordHash string // PHC string (argon2id)
	Created      time.Time
}

// Token is a bearer token for the API, stored by the SHA-256 of its secret so
// that a copy of the database yields no usable token.
type Token struct {
	Hash    []byte // SHA-256 of the secret
	UserID  int64
	Label   string
	Created time.Time
	Expires time.Time // zero: never
}

// Ref is a reference from a message to a resource it names.
type Ref struct {
	ID   resource.ID
	Size int64
}

// Message is one copy of a Placeholder Message in one user's folder. The same
// Message-ID can be in several users' folders (the sender's sent copy, each
// local recipient's inbox copy) and twice in one user's when they write to
// themselves: ID tells the copies apart.
type Message struct {
	ID           string // opaque, unique in the store; chosen by the caller
	UserID       int64
	Folder       Folder
	MessageID    string // the Message-ID header, with angle brackets
	ThreadID     string // the X-Thread-ID header, with angle brackets
	Status       Status
	StatusReason string
	Seen         bool
	From         string    // the From header, denormalised for listings
	Subject      string    // the Subject header, denormalised for listings
	Date         time.Time // the Date header; zero for drafts
	Created      time.Time
	Updated      time.Time
	Placeholder  []byte // the Placeholder Message JSON of this copy
	Refs         []Ref  // resources the placeholder names, each once
	// TrashedFrom and Trashed are set while the message is in Trash: the
	// folder it was deleted from (where a restore puts it back) and when
	// (the server purges it TrashRetention later). Empty and zero elsewhere.
	TrashedFrom Folder
	Trashed     time.Time
	// Keywords are the message's flags other than Seen (keywords.go): the
	// same state for the webmail, the CLI, IMAP and JMAP.
	Keywords []string
	// UID and ModSeq are the store's, for IMAP (RFC 9051 §2.3.1.1, RFC
	// 7162): what a caller sets is ignored. UID numbers the message in its
	// folder, from 1 up, given at InsertMessage and again at every
	// UpdateMessage that changes the folder (a moved message is a new one
	// there), never reused in the folder. ModSeq is the Seq of the
	// message's latest change.
	UID    uint32
	ModSeq int64
}

// ChangeKind says what happened to a message.
type ChangeKind string

const (
	Created ChangeKind = "created"
	Updated ChangeKind = "updated"
	Deleted ChangeKind = "deleted"
)

// Change is one entry of a user's change log. Seq values are increasing
// across the whole store; a client's cursor is the Seq it has seen.
//
// Seq order is commit order: once a reader sees a change with some Seq, no
// change with a lower Seq can commit later, whatever the number of
// concurrent writers and processes. That is what lets a client resume from
// any cursor (a Seq it was given, or Cursor) without missing a change.
type Change struct {
	Seq       int64
	UserID    int64
	MessageID string // Message.ID (the opaque id), not the header
	Folder    Folder
	Kind      ChangeKind
	// UID is the message's UID in Folder: for a Deleted change, the one it
	// had there (IMAP's VANISHED, RFC 7162 §3.2.10).
	UID uint32
}

// Client is an OAuth 2.0 client registered at the domain's authorization
// server (package authz).
type Client struct {
	ID           string   // client_id
	Name         string   // for people
	Public       bool     // a public client (webmail, CLI): PKCE, no credentials
	RedirectURIs []string // matched exactly (RFC 9700 §2.1)
	// JWKS holds a confidential client's public keys for private_key_jwt
	// (RFC 7523 §2.2), as a JSON Web Key Set document.
	JWKS    []byte
	Created time.Time
}

// GrantKind says what a Grant is.
type GrantKind string

const (
	GrantCode    GrantKind = "code"    // an authorization code (RFC 6749 §4.1)
	GrantRefresh GrantKind = "refresh" // a refresh token (RFC 6749 §6)
	GrantDevice  GrantKind = "device"  // a device code (RFC 8628)
)

// Grant is a credential the authorization server issued and must remember:
// stored by the SHA-256 of its secret, never the secret. Every grant that
// descends from one sign-in shares a Family, so that reuse of a spent code
// or refresh token revokes all of them (RFC 9700 §4.14) and the access
// tokens that name the family stop working.
type Grant struct {
	Hash        []byte
	Kind        GrantKind
	Family      string
	ClientID    string
	UserID      int64  // 0 for a device code not approved yet
	Scope       string // space-separated
	RedirectURI string // code: the redirect_uri of the authorization request
	Challenge   string // code: the PKCE S256 code_challenge
	JKT         string // the DPoP key thumbprint the grant is bound to, if any
	UserCode    string // device: the code the user types (unique while live)
	Created     time.Time
	Expires     time.Time
	Used        bool // code redeemed, refresh token rotated, device code redeemed
	Revoked     bool
}

// JobState is where a Job is in its life.
type JobState string

const (
	JobQueued  JobState = "queued"  // waiting for NextTry
	JobRunning JobState = "running" // claimed by a worker until NextTry (its lease)
	JobDone    JobState = "done"    // finished; kept for status displays until PruneJobs
	JobFailed  JobState = "failed"  // given up for good; kept until PruneJobs
)

// Valid reports whether s is a known job state.
func (s JobState) Valid() bool {
	return s == JobQueued || s == JobRunning || s == JobDone || s == JobFailed
}

// Job is one unit of durable background work: a push of a Placeholder
// Message to one recipient domain, a pull of a message's resources. The
// store only schedules jobs (AddJob, ClaimJobs, UpdateJob); what a Kind
// means, its Payload, the backoff between attempts and the retry horizon
// are its runner's (package mta).
//
// A job is added in the transaction that creates the work (the send that
// queues the push commits with it or not at all), claimed by a worker with
// Store.ClaimJobs for a lease, and finished by the worker with UpdateJob:
// done, failed, or queued again with a later NextTry. A worker that dies
// holding a job loses it when the lease ends and another worker claims it,
// so a job runs at least once and its runner must be idempotent.
type Job struct {
	ID   int64  // assigned by AddJob, never reused
	Kind string // "push", "pull", ...: the runner that claims it
	// Key is unique in the store, whatever the job's state, so that adding
	// the same work twice is refused (ErrExists): e.g.
	// "push:<message id>:<domain>:<copy>".
	Key       string
	Payload   []byte // the kind's own JSON
	State     JobState
	Attempts  int       // how many times it was claimed
	NextTry   time.Time // when it may run (next); for a running job: when its lease ends
	LastError string    // the last attempt's failure, for people and status displays
	Created   time.Time
	Updated   time.Time
	// Expires is the retry horizon: a job still not done then is failed
	// for good by its runner. The store does not enforce it (ClaimJobs
	// still hands out such a job, so that its runner can fail it and tell
	// the sender); zero: no horizon.
	Expires time.Time
	// Holder is the node that claimed the job last (ClaimJobs's holder):
	// while the job is running, the one whose lease it is. AddJob stores
	// it as given (normally empty); UpdateJob leaves it as it is, so that
	// a finished job still names who ran it.
	Holder string
}

type ListOptions struct {
	Folder Folder
	// Limit caps the number of messages; <= 0 means no cap.
	Limit int
	// After, when set, lists only the messages that come after it in the
	// listing's order (older ones): the key of the last message of the
	// previous page, so that paging is stable while newer messages arrive.
	After *ListKey
}

// FolderCount is how many messages a folder holds, and how many of them
// are unseen.
type FolderCount struct {
	Total  int
	Unseen int
}

// ListKey is a message's position in a folder listing: the listing is
// ordered by Date, then Created, then ID, all descending.
type ListKey struct {
	Date    time.Time // zero for drafts
	Created time.Time
	ID      string
}

// KeyOf returns m's position in a listing.
func KeyOf(m Message) ListKey { return ListKey{Date: m.Date, Created: m.Created, ID: m.ID} }

// The store's methods are grouped by concern, each with a read side and a
// write side, so that code names only the part it uses (the authorization
// server its grants, the MTA its jobs, a forwarding policy a user's
// settings) while every write still joins the one transaction type, Tx:
// what the mailbox, the AS and the MTA decide together commits together.
// Reader and Tx are the unions; Store adds Update, View and the work done
// outside a caller's transaction (claims, pruning).

// SettingsReader reads the domain's settings and the users' own.
type SettingsReader interface {
	Setting(ctx context.Context, key string) (string, error) // ErrNotFound if unset
	UserSettingReader
}

// UserSettingReader reads the users' own settings; UserKey gives them
// types.
type UserSettingReader interface {
	// UserSetting returns one of a user's own settings (a forwarding
	// policy, a forwarding rule): ErrNotFound if unset or if there is no
	// such user. Per-user settings are keyed by the user's ID, never by
	// their address, so that they go with the user (DeleteUser) and a new
	// account at the same address starts from the defaults.
	UserSetting(ctx context.Context, userID int64, name string) (string, error)
}

// SettingsWriter writes settings.
type SettingsWriter interface {
	SetSetting(ctx context.Context, key, value string) error
	UserSettingWriter
}

// UserSettingWriter writes the users' own settings.
type UserSettingWriter interface {
	// SetUserSetting sets one of a user's settings; an empty value unsets
	// it. ErrNotFound when there is no such user.
	SetUserSetting(ctx context.Context, userID int64, name, value string) error
}

// AccountReader reads users and their API tokens.
type AccountReader interface {
	UserByAddress(ctx context.Context, address string) (User, error)
	UserByID(ctx context.Context, id int64) (User, error)
	Users(ctx context.Context) ([]User, error) // ordered by address
	// TokenByHash returns the token with that hash, expired or not: the
	// caller decides what expiry means.
	TokenByHash(ctx context.Context, hash []byte) (Token, error)
}

// AccountWriter writes users and their API tokens.
type AccountWriter interface {
	AddUser(ctx context.Context, u User) (User, error) // ErrExists; returns it with ID and Created set
	SetPassword(ctx context.Context, userID int64, hash string) error
	// DeleteUser removes the user with everything of theirs: tokens,
	// per-user settings, uploads, messages (and their envelopes), changes
	// and the grants issued to them. Their resources become unreferenced
	// unless others hold them. Their ID is never given to another user.
	DeleteUser(ctx context.Context, userID int64) error

	AddToken(ctx context.Context, t Token) error
	DeleteToken(ctx context.Context, hash []byte) error
}

// MailboxReader reads the users' messages, the resources they reference
// and the change feed.
type MailboxReader interface {
	Message(ctx context.Context, userID int64, id string) (Message, error)
	// MessagesByMessageID returns the user's copies with that Message-ID.
	MessagesByMessageID(ctx context.Context, userID int64, messageID string) ([]Message, error)
	// Envelope returns the envelope a received copy arrived with (SetEnvelope);
	// ErrNotFound when the message has none or is not the user's.
	Envelope(ctx context.Context, userID int64, id string) ([]byte, error)
	// Messages lists a folder newest first (by Date, then Created, then
	// ID, so that the order is total), without Placeholder bodies loaded
	// only if the implementation chooses; callers must not rely on either.
	Messages(ctx context.Context, userID int64, opt ListOptions) ([]Message, error)
	// FolderCounts counts the user's messages, and the unseen ones, in
	// each folder that holds any (a folder not in the map is empty).
	FolderCounts(ctx context.Context, userID int64) (map[Folder]FolderCount, error)
	// TrashedBefore returns messages of every user that are in Trash and
	// were trashed before t, oldest trashed first, at most limit (<= 0:
	// all): the server's trash sweep purges them.
	TrashedBefore(ctx context.Context, t time.Time, limit int) ([]Message, error)
	// Search returns the user's indexed messages (IndexMessage) that match
	// q, in listing order (Messages), at most q.Limit after q.Page.
	Search(ctx context.Context, userID int64, q SearchQuery) ([]Message, error)
	// FolderState returns the folder's UIDVALIDITY, next UID and highest
	// modseq. A folder that never held a message has UIDNext 1 and
	// HighestModSeq 0 (its UIDValidity is the one it will get).
	FolderState(ctx context.Context, userID int64, folder Folder) (FolderState, error)
	// FolderIndex returns the folder's messages with ModSeq greater than
	// changedSince (0: all), ordered by UID: what an IMAP session numbers
	// and a CONDSTORE client asks for.
	FolderIndex(ctx context.Context, userID int64, folder Folder, changedSince int64) ([]IndexEntry, error)
	// Unindexed returns messages of every user that are sent or complete
	// and not in the search index, oldest created first, at most limit:
	// the mailbox's indexer reads their text bodies and indexes them.
	Unindexed(ctx context.Context, limit int) ([]Message, error)

	// Holds reports whether the user may use the resource in a new
	// message: they uploaded it (and the upload has not expired) or a
	// message of theirs references it.
	Holds(ctx context.Context, userID int64, id resource.ID) (bool, error)
	// Referenced reports whether anything (an upload or any user's message)
	// references the resource; garbage collection spares those (and
	// decides in the transaction of CollectorWriter.Condemn).
	Referenced(ctx context.Context, id resource.ID) (bool, error)

	// Cursor is the newest Seq in the store (0 when there are none): a
	// listing taken in the same transaction is current as of it.
	Cursor(ctx context.Context) (int64, error)
	// Changes returns the user's changes with Seq > since, oldest first, at
	// most limit of them (limit <= 0: all). It returns ErrCursorGone when
	// changes after since have been pruned. A reader that resumes from
	// any cursor it was given misses no change, however many writers
	// commit at once (metatest FeedRace): Seq order is commit order.
	Changes(ctx context.Context, userID int64, since int64, limit int) ([]Change, error)
}

// MailboxWriter writes messages, envelopes and uploads. Outside meta's
// implementations only the mailbox service calls InsertMessage,
// UpdateMessage, DeleteMessage and SetEnvelope (mailbox.TestOneRowWriter).
type MailboxWriter interface {
	// SetEnvelope keeps, with message id, the envelope it arrived with
	// from another domain: the placeholder as received and the chain of
	// signed envelope headers (docs/PROTOCOL.md §12), which a forward of
	// the copy extends. It goes when the message goes.
	SetEnvelope(ctx context.Context, id string, envelope []byte) error

	// AddUpload records that the user uploaded the resource (idempotent:
	// it refreshes the upload's time). A resource condemned by garbage
	// collection is a *CondemnedError, as it is for InsertMessage and
	// UpdateMessage naming one in Refs.
	AddUpload(ctx context.Context, userID int64, ref Ref) error

	// InsertMessage stores a new message (ErrExists if its ID is taken) and
	// logs a Created change for its owner.
	InsertMessage(ctx context.Context, m Message) error
	// UpdateMessage replaces every field of the stored message with the
	// same ID and owner (ErrNotFound otherwise) and logs an Updated change,
	// or, when the folder changed, a Deleted change for the old folder and a
	// Created change for the new.
	UpdateMessage(ctx context.Context, m Message) error
	// DeleteMessage removes it (ErrNotFound if not the user's) and logs a
	// Deleted change.
	DeleteMessage(ctx context.Context, userID int64, id string) error
	// IndexMessage puts (or replaces) the message's entry in the search
	// index; ErrNotFound if it is not the user's. Deleting the message
	// removes its entry. The text is read before the transaction, never
	// in it (no file I/O inside a transaction).
	IndexMessage(ctx context.Context, userID int64, id string, doc SearchDoc) error
}

// AuthReader reads the authorization server's state: clients, grants and
// revoked grant families.
type AuthReader interface {
	Client(ctx context.Context, id string) (Client, error)
	Clients(ctx context.Context) ([]Client, error) // ordered by ID
	GrantByHash(ctx context.Context, hash []byte) (Grant, error)
	// GrantByUserCode finds a device grant by its user code.
	GrantByUserCode(ctx context.Context, userCode string) (Grant, error)
	// FamilyRevoked reports whether a grant family has been revoked; an
	// unknown family is not revoked.
	FamilyRevoked(ctx context.Context, family string) (bool, error)
}

// AuthWriter writes the authorization server's state.
type AuthWriter interface {
	AddClient(ctx context.Context, c Client) error // ErrExists
	// DeleteClient removes the client and its grants (ErrNotFound if none).
	DeleteClient(ctx context.Context, id string) error
	AddGrant(ctx context.Context, g Grant) error // ErrExists for a taken hash or live user code
	// UpdateGrant stores Used, Revoked, UserID, JKT and Expires of the grant
	// with g.Hash (ErrNotFound if none).
	UpdateGrant(ctx context.Context, g Grant) error
	// RevokeFamily marks every grant of the family revoked and remembers
	// the family as revoked (for FamilyRevoked) even once its grants are
	// pruned, until the time given.
	RevokeFamily(ctx context.Context, family string, until time.Time) error
}

// JobReader reads the durable job queue (the MTA's pushes and pulls).
type JobReader interface {
	// Job returns the job with the ID (ErrNotFound if none).
	Job(ctx context.Context, id int64) (Job, error)
	// JobByKey returns the job with the key (ErrNotFound if none).
	JobByKey(ctx context.Context, key string) (Job, error)
	// Jobs lists the jobs of a kind ("" for every kind) newest first, by
	// Created then ID, at most limit of them (limit <= 0: all); for status
	// displays, not for finding work (that is Store.ClaimJobs).
	Jobs(ctx context.Context, kind string, limit int) ([]Job, error)
	// CountJobs counts the jobs of a kind still to finish (queued or
	// running) whose Key starts with keyPrefix ("" for every one): the
	// depth of a queue, for metrics, without reading the jobs.
	CountJobs(ctx context.Context, kind, keyPrefix string) (int, error)
	// JobsByKeyPrefix lists the jobs, of any kind and state, whose Key
	// starts with prefix (not empty), oldest first by ID: the jobs of one
	// piece of work, e.g. a sent message's pushes ("push:<row id>:"), for
	// its delivery state. It reads the key's index.
	JobsByKeyPrefix(ctx context.Context, prefix string) ([]Job, error)
}

// KeyPrefixEnd is the least string above every string that starts with
// prefix ("" when there is none): the stores' range over the key index.
func KeyPrefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}

// JobWriter adds and finishes jobs.
type JobWriter interface {
	// AddJob stores a new job and returns it with ID set, State queued
	// when it was empty, NextTry now when it was zero, and Created and
	// Updated now when they were zero. A job whose Key is taken, whatever
	// that job's state, is ErrExists: adding the same work twice (a
	// repeated push of one message to one domain) is a no-op the caller
	// can recognise. Kind and Key must not be empty.
	AddJob(ctx context.Context, j Job) (Job, error)
	// UpdateJob stores State, Attempts, NextTry, LastError, Payload and
	// Updated (now when zero) of the job with j.ID (ErrNotFound if none);
	// Kind, Key, Created and Expires stay as added. A worker finishing a
	// job it claimed should first read it in the same transaction and
	// check that it is still running with the Attempts it was claimed
	// with: otherwise its lease ended and another worker holds the job.
	UpdateJob(ctx context.Context, j Job) error
}

// IdempotencyWriter keeps the answers to requests made with an
// Idempotency-Key (docs/PROTOCOL.md §8.9).
type IdempotencyWriter interface {
	// Idempotency returns the user's record for an Idempotency-Key,
	// expired or not (the caller compares Expires with its clock);
	// ErrNotFound when there is none.
	Idempotency(ctx context.Context, userID int64, key string) (Idempotency, error)
	// PutIdempotency stores a record, replacing the user's record with the
	// same key, and forgets the user's records that expired by r.Created.
	// Call it in the transaction that does the request's work, so that the
	// work and its record commit together.
	PutIdempotency(ctx context.Context, r Idempotency) error
}

// Reader is the read side, shared by Store and Tx: every concern's.
type Reader interface {
	SettingsReader
	AccountReader
	MailboxReader
	AuthReader
	JobReader
	CollectorReader
}

// Tx is a transaction: reads see its own writes. It must not be used after
// the function given to Update returns. A method that returns ErrExists or
// ErrNotFound leaves the transaction usable (a caller may go on, e.g. after
// adding a job that was already queued); after any other error the
// transaction may be aborted (PostgreSQL), and fn should return an error.
type Tx interface {
	Reader
	SettingsWriter
	AccountWriter
	MailboxWriter
	AuthWriter
	JobWriter
	IdempotencyWriter
	CollectorWriter
}

// Idempotency is the remembered answer to a request made with an
// Idempotency-Key (docs/PROTOCOL.md §8.9): a retry of the request with the
// key gets Result again instead of doing the work twice. Records are per
// user and deleted with the user.
type Idempotency struct {
	UserID int64
	Key    string // the client's key, at most 255 bytes
	// Request identifies what was asked (e.g. "send:" and the draft's id):
	// the key used again for another request is refused.
	Request          string
	Result           []byte // the answer, as the caller encoded it
	Created, Expires time.Time
}

// Once is a replay cache: it remembers keys (a DPoP proof's jti, an
// assertion's jti) until they expire, so that each is accepted once, across
// restarts and by every process that shares the store (RFC 9449 §11.1,
// RFC 7523 §3 item 7).
type Once interface {
	// UseOnce records key until expires and reports whether it was fresh:
	// false when the key is already recorded and has not expired. Expired
	// keys are forgotten (lazily). Keys are opaque strings of at most 512
	// bytes; callers namespace them ("dpop:", "assertion:").
	UseOnce(ctx context.Context, key string, expires time.Time) (fresh bool, err error)
}

// Store is a domain's metadata store. It is safe for concurrent use.
type Store interface {
	Reader
	Once
	JobQueue
	Locks
	// Update runs fn in a write transaction and commits if fn returns nil;
	// otherwise, or on panic, it rolls back and returns fn's error.
	//
	// The contract every implementation keeps and every caller relies on:
	//   - Serializable: the committed Updates have the effect of running one
	//     after another, so a read-check-write in fn (a folder checked, then
	//     the row rewritten) needs no lock of its own.
	//   - fn may be run more than once: when the transaction conflicts with
	//     a concurrent one (PostgreSQL: serialization failure, deadlock),
	//     it is rolled back and fn runs again, a bounded number of times,
	//     before Update gives up with the conflict's error. So fn must be
	//     safe to run again: it must not keep state across runs other than
	//     what it recomputes (assign results to outer variables, don't
	//     append to them), and what it reports is the last run's.
	//   - No file I/O, network, signing or waiting inside fn: a run holds
	//     locks others wait for, and a repeated run would repeat the side
	//     effect. Do that work before Update, or after it returns.
	//   - fn must not call Update or View itself.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn with a consistent read-only snapshot: every read sees
	// the commits made before the snapshot was taken and none after.
	View(ctx context.Context, fn func(Reader) error) error

	// PruneUploads forgets uploads older than the time; their resources
	// stay while a message references them.
	PruneUploads(ctx context.Context, before time.Time) (int, error)
	// PruneChanges drops change log entries older than the time, making
	// older cursors answer ErrCursorGone.
	PruneChanges(ctx context.Context, before time.Time) (int, error)
	// PruneGrants forgets grants that expired before the time, and revoked
	// families remembered until before it.
	PruneGrants(ctx context.Context, before time.Time) (int, error)

	Close() error
}

// ErrLeaseLost is returned by RenewJob when the job is no longer the
// caller's: its lease ended and another holder claimed it, or it was
// finished or released.
var ErrLeaseLost = errors.New("meta: lease lost")

// JobQueue is the store's side of the durable job queue: claims with
// leases, their renewal and release, and pruning, each a transaction of its
// own (adding and finishing jobs is JobWriter's, in the caller's
// transaction). Several nodes of a domain share one queue: a holder names
// one node (pullmail serve --node), unique among those sharing the store.
type JobQueue interface {
	// ClaimJobs atomically takes up to n jobs of the kind that are due at
	// now: queued with NextTry <= now, or running with NextTry <= now (the
	// lease of a worker that crashed or stalled has ended: a node that
	// died loses its jobs to the others when their leases end). It marks
	// them running with NextTry = now+lease, Attempts one higher, Holder
	// = holder and Updated = now, commits, and returns them oldest NextTry
	// first (then by ID). Two callers, in this process or another sharing
	// the store, never get the same job for the same lease. n <= 0 claims
	// nothing; lease must be positive. Jobs past their Expires are claimed
	// like any other: failing them is the runner's decision.
	//
	// SQLite runs it as one write transaction (writes are serialised);
	// PostgreSQL selects the due rows with FOR UPDATE SKIP LOCKED in
	// the UPDATE's subquery, so that concurrent claimers skip each other's
	// rows instead of waiting for them.
	ClaimJobs(ctx context.Context, holder, kind string, now time.Time, n int, lease time.Duration) ([]Job, error)
	// RenewJob extends the lease of j, a job its caller claimed, to
	// now+lease (NextTry; Updated = now) and returns the job as stored.
	// It is ErrLeaseLost unless the job is still running with the
	// Attempts and Holder it was claimed with: a long job (a pull of a
	// gigabyte) renews its lease well before it ends, so that no other
	// node takes it over while its holder is alive.
	RenewJob(ctx context.Context, j Job, now time.Time, lease time.Duration) (Job, error)
	// ReleaseJobs makes every running job of holder queued again, due at
	// now, and returns how many: a node starting up hands back what its
	// previous run held when it stopped (a crash, or a clean stop
	// mid-attempt), rather than leaving those jobs idle until their
	// leases end. The jobs of other holders are left alone.
	ReleaseJobs(ctx context.Context, holder string, now time.Time) (int, error)
	// PruneJobs deletes done and failed jobs last updated before the time
	// and returns how many; their keys become free again.
	PruneJobs(ctx context.Context, before time.Time) (int, error)
}

// Locks are named leases shared by every process on the store: the MTA's
// lock on the pull of one resource digest, so that two nodes do not both
// fetch the same bytes. Each call is a transaction of its own. A lock whose
// holder died is free when its lease ends; a live holder renews it (Lock
// again) well before. A holder is one node (as for JobQueue): a node that
// lets several of its goroutines use one lock name must serialise them
// itself, since the store cannot tell them apart.
type Locks interface {
	// Lock takes the lock name for holder until now+lease, when it is
	// free, its lease has ended (now is at or after its end), or holder
	// holds it already (then the lease is renewed). It reports whether
	// holder holds it now; false (no error) when another holder's lease
	// runs. Names are opaque strings of at most 512 bytes; callers
	// namespace them ("pull:"). lease must be positive.
	Lock(ctx context.Context, name, holder string, now time.Time, lease time.Duration) (bool, error)
	// Unlock releases name if holder holds it, and does nothing otherwise
	// (another holder took it over after the lease ended).
	Unlock(ctx context.Context, name, holder string) error
	// UnlockAll releases every lock holder holds and returns how many: a
	// node starting up frees what its previous run held.
	UnlockAll(ctx context.Context, holder string) (int, error)
}

// Notifier is implemented by stores that can tell of commits to users'
// change logs, so that event streams (mailbox.Hub) wake without polling.
// It is not part of Store: a store without it is polled.
type Notifier interface {
	// OnCommit sets fn to be called after commits that appended to users'
	// change logs, with those users' IDs (each once per call), on a
	// goroutine of the store's: fn must be quick and must not call Update.
	// nil removes the callback. What it sees depends on the store:
	// meta/sqlite the commits of its own process (others are found by
	// polling Cursor), meta/postgres every process's, by LISTEN/NOTIFY.
	OnCommit(fn func(users []int64))
}
