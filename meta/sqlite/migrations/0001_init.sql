-- 0001: the initial schema. Times are Unix nanoseconds in UTC, 0 for the
-- zero time. Resource ids are stored as their 43-character text form.

CREATE TABLE settings (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT;

-- AUTOINCREMENT: a deleted user's id is never given to a new user.
CREATE TABLE users (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	address       TEXT    NOT NULL UNIQUE,
	password_hash TEXT    NOT NULL,
	created       INTEGER NOT NULL,
	-- The highest pruned change seq of this user: Changes(since) with
	-- since < changes_floor answers ErrCursorGone.
	changes_floor INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE tokens (
	hash    BLOB    PRIMARY KEY,
	user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	label   TEXT    NOT NULL,
	created INTEGER NOT NULL,
	expires INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE uploads (
	user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	digest  TEXT    NOT NULL,
	size    INTEGER NOT NULL,
	created INTEGER NOT NULL,
	PRIMARY KEY (user_id, digest)
) STRICT, WITHOUT ROWID;
CREATE INDEX uploads_digest ON uploads (digest);
CREATE INDEX uploads_created ON uploads (created);

CREATE TABLE messages (
	id            TEXT    PRIMARY KEY,
	user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	folder        TEXT    NOT NULL,
	message_id    TEXT    NOT NULL,
	thread_id     TEXT    NOT NULL,
	status        TEXT    NOT NULL,
	status_reason TEXT    NOT NULL,
	seen          INTEGER NOT NULL,
	from_         TEXT    NOT NULL,
	subject       TEXT    NOT NULL,
	date          INTEGER NOT NULL,
	created       INTEGER NOT NULL,
	updated       INTEGER NOT NULL,
	placeholder   BLOB
) STRICT;
CREATE INDEX messages_list ON messages (user_id, folder, date DESC, created DESC);
CREATE INDEX messages_message_id ON messages (user_id, message_id);

CREATE TABLE message_refs (
	message_id TEXT    NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
	digest     TEXT    NOT NULL,
	size       INTEGER NOT NULL,
	PRIMARY KEY (message_id, digest)
) STRICT, WITHOUT ROWID;
CREATE INDEX message_refs_digest ON message_refs (digest);

-- AUTOINCREMENT: seq is never reused, even after pruning every row, so
-- sqlite_sequence holds the store's cursor.
CREATE TABLE changes (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	message_id TEXT    NOT NULL,
	folder     TEXT    NOT NULL,
	kind       TEXT    NOT NULL,
	at         INTEGER NOT NULL
) STRICT;
CREATE INDEX changes_user ON changes (user_id, seq);
CREATE INDEX changes_at ON changes (at);
