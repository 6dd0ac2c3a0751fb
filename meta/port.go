package meta

import (
	"context"
	"time"
)

// Copying a whole store (pullmail migrate, backup, restore; package
// backup) goes through the seams like everything else, not through a
// database's dump format, so that any pair of implementations works
// (SQLite to PostgreSQL, PostgreSQL to SQLite, the same kind twice). Most
// of what a store holds is listed by Reader (Users, Clients, Jobs,
// Messages) and written by Tx (AddToken, AddGrant, InsertMessage, …); the
// rest is here, as two optional interfaces that the Reader of a View and
// the Tx of an Update implement (a type assertion), so that ordinary code
// never sees them.

// Upload is a user's upload of a resource (Tx.AddUpload), as listed for a
// copy.
type Upload struct {
	UserID  int64
	Ref     Ref
	Created time.Time
}

// Exporter lists what Reader cannot, for a copy of the whole store. It is
// implemented by the Reader a View gives (read in its snapshot).
type Exporter interface {
	// Settings returns every domain setting.
	Settings(ctx context.Context) (map[string]string, error)
	// UserSettings returns every setting of the user.
	UserSettings(ctx context.Context, userID int64) (map[string]string, error)
	// Tokens returns every API token, ordered by hash.
	Tokens(ctx context.Context) ([]Token, error)
	// Uploads returns every upload, ordered by user then digest.
	Uploads(ctx context.Context) ([]Upload, error)
	// Grants returns every grant, ordered by hash.
	Grants(ctx context.Context) ([]Grant, error)
	// RevokedFamilies returns the revoked grant families remembered, with
	// the time until which each is (RevokeFamily).
	RevokedFamilies(ctx context.Context) (map[string]time.Time, error)
	// AllMessages returns up to limit messages of any user whose ID is
	// greater than after, ordered by ID, each whole (Placeholder and
	// Refs): a copy pages through them.
	AllMessages(ctx context.Context, after string, limit int) ([]Message, error)
	// FolderStates returns every folder's IMAP state that the store keeps,
	// ordered by user then folder.
	FolderStates(ctx context.Context) ([]UserFolder, error)
}

// UserFolder is a folder's state (FolderState) with whose folder it is, as
// listed for a copy.
type UserFolder struct {
	UserID int64
	Folder Folder
	State  FolderState
}

// Loader writes what Tx cannot, for a copy into a store. It is implemented
// by the Tx an Update gives. A copy writes into a store nobody else writes
// to at the time (pullmail migrate and restore hold the data directory's
// lock; backup writes a store of its own).
type Loader interface {
	// LoadUser adds the user with u.ID and u.Created as given, so that
	// every row naming the user (tokens, grants, jobs' payloads, access
	// tokens already issued) still names them; IDs given later by AddUser
	// stay above it. ErrExists when the ID or the address is taken.
	LoadUser(ctx context.Context, u User) error
	// LoadUpload records an upload with its time (AddUpload takes now).
	LoadUpload(ctx context.Context, up Upload) error
	// LoadMessage stores a message as InsertMessage does, but keeps its
	// UID and ModSeq and logs no change (the copy's feed starts afresh:
	// ResetFeed), so that mail clients' cached UIDs stay right.
	LoadMessage(ctx context.Context, m Message) error
	// LoadFolderState sets the folder's state (its next UID and highest
	// modseq; UIDVALIDITY is the user's): with LoadMessage, no UID is given
	// again in the folder.
	LoadFolderState(ctx context.Context, f UserFolder) error
	// ResetFeed starts the change feed afresh above seq (the copied
	// store's Cursor): Cursor becomes greater than seq and than any Seq
	// this store logged so far, and every user's log is kept only from
	// there, so that every cursor handed out before (by either store)
	// answers ErrCursorGone and its client lists again. It returns the
	// new Cursor.
	ResetFeed(ctx context.Context, seq int64) (int64, error)
}
