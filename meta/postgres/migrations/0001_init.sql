-- 0001: the initial schema: the tables of meta/sqlite's migrations 0001 to
-- 0007 in one step. Times are Unix nanoseconds in UTC (bigint), 0 for the
-- zero time: timestamptz keeps microseconds only. Resource ids are their
-- 43-character text form. Text that is ordered or compared as a key is
-- COLLATE "C" (byte order, as in SQLite) whatever the database's locale.
-- Identity columns come from sequences, which never give a number twice:
-- a deleted user's or pruned job's id is never reused.

CREATE TABLE settings (
	key   text COLLATE "C" PRIMARY KEY,
	value text NOT NULL
);

CREATE TABLE users (
	id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	address       text COLLATE "C" NOT NULL UNIQUE,
	password_hash text   NOT NULL,
	created       bigint NOT NULL,
	-- The highest pruned change seq of this user: Changes(since) with
	-- since < changes_floor answers ErrCursorGone.
	changes_floor bigint NOT NULL DEFAULT 0
);

CREATE TABLE tokens (
	hash    bytea  PRIMARY KEY,
	user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	label   text   NOT NULL,
	created bigint NOT NULL,
	expires bigint NOT NULL
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE user_settings (
	user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name    text COLLATE "C" NOT NULL,
	value   text   NOT NULL,
	PRIMARY KEY (user_id, name)
);

CREATE TABLE uploads (
	user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	digest  text COLLATE "C" NOT NULL,
	size    bigint NOT NULL,
	created bigint NOT NULL,
	PRIMARY KEY (user_id, digest)
);
CREATE INDEX uploads_digest ON uploads (digest);
CREATE INDEX uploads_created ON uploads (created);

CREATE TABLE messages (
	id            text COLLATE "C" PRIMARY KEY,
	user_id       bigint  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	folder        text    NOT NULL,
	message_id    text COLLATE "C" NOT NULL,
	thread_id     text    NOT NULL,
	status        text    NOT NULL,
	status_reason text    NOT NULL,
	seen          boolean NOT NULL,
	from_         text    NOT NULL,
	subject       text    NOT NULL,
	date          bigint  NOT NULL,
	created       bigint  NOT NULL,
	updated       bigint  NOT NULL,
	placeholder   bytea
);
CREATE INDEX messages_list ON messages (user_id, folder, date DESC, created DESC, id DESC);
CREATE INDEX messages_message_id ON messages (user_id, message_id);

CREATE TABLE message_refs (
	message_id text COLLATE "C" NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
	digest     text COLLATE "C" NOT NULL,
	size       bigint NOT NULL,
	PRIMARY KEY (message_id, digest)
);
CREATE INDEX message_refs_digest ON message_refs (digest);

CREATE TABLE envelopes (
	message_id text COLLATE "C" PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
	envelope   bytea NOT NULL
);

-- The change log. seq comes from the identity's sequence, taken only while
-- the writing transaction holds the change-log lock (feed.go), so that seq
-- order is commit order. CACHE 1 (the default) matters: with a per-session
-- cache, numbers would not be handed out in the order they are asked for.
CREATE TABLE changes (
	seq        bigint GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,
	user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	message_id text   NOT NULL,
	folder     text   NOT NULL,
	kind       text   NOT NULL,
	at         bigint NOT NULL
);
CREATE INDEX changes_user ON changes (user_id, seq);
CREATE INDEX changes_at ON changes (at);

-- The highest seq of the changes that were removed (pruned, or with a
-- deleted user), so that Cursor never goes back. One row.
CREATE TABLE changes_removed (
	one boolean PRIMARY KEY DEFAULT true CHECK (one),
	seq bigint  NOT NULL
);
INSERT INTO changes_removed (seq) VALUES (0);

-- The replay cache (meta.Once).
CREATE TABLE once (
	key     text COLLATE "C" PRIMARY KEY,
	expires bigint NOT NULL
);
CREATE INDEX once_expires ON once (expires);

-- The authorization server's state (package authz).
CREATE TABLE clients (
	id            text COLLATE "C" PRIMARY KEY,
	name          text    NOT NULL,
	public        boolean NOT NULL,
	redirect_uris text[]  NOT NULL,
	jwks          bytea,
	created       bigint  NOT NULL
);

CREATE TABLE grants (
	hash         bytea   PRIMARY KEY,
	kind         text    NOT NULL,
	family       text COLLATE "C" NOT NULL,
	client_id    text COLLATE "C" NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
	user_id      bigint  REFERENCES users (id) ON DELETE CASCADE, -- NULL: a device code not approved yet
	scope        text    NOT NULL,
	redirect_uri text    NOT NULL,
	challenge    text    NOT NULL,
	jkt          text    NOT NULL,
	user_code    text COLLATE "C" NOT NULL,
	created      bigint  NOT NULL,
	expires      bigint  NOT NULL,
	used         boolean NOT NULL,
	revoked      boolean NOT NULL
);
CREATE INDEX grants_family ON grants (family);
CREATE INDEX grants_expires ON grants (expires);
CREATE UNIQUE INDEX grants_user_code ON grants (user_code) WHERE user_code <> '';

CREATE TABLE revoked_families (
	family text COLLATE "C" PRIMARY KEY,
	until  bigint NOT NULL
);

-- The durable job queue (meta.Job).
CREATE TABLE jobs (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kind       text COLLATE "C" NOT NULL,
	key        text COLLATE "C" NOT NULL UNIQUE,
	payload    bytea,
	state      text   NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
	attempts   bigint NOT NULL,
	next_try   bigint NOT NULL,
	last_error text   NOT NULL,
	created    bigint NOT NULL,
	updated    bigint NOT NULL,
	expires    bigint NOT NULL
);
-- ClaimJobs: the due jobs of a kind, by next_try (partial: finished jobs
-- are never due).
CREATE INDEX jobs_claim ON jobs (kind, next_try, id) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_list ON jobs (kind, created DESC, id DESC);
CREATE INDEX jobs_created ON jobs (created DESC, id DESC);
CREATE INDEX jobs_finished ON jobs (updated) WHERE state IN ('done', 'failed');

-- Idempotency-Key records (meta.Tx.PutIdempotency).
CREATE TABLE idempotency (
	user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	key     text COLLATE "C" NOT NULL,
	request text   NOT NULL,
	result  bytea  NOT NULL,
	created bigint NOT NULL,
	expires bigint NOT NULL,
	PRIMARY KEY (user_id, key)
);
