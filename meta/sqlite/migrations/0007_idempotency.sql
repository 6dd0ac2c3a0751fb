-- 0007: Idempotency-Key records (meta.Tx.PutIdempotency): the answer to a
-- request made with a key, kept until it expires so that a retry of the
-- request gets the same answer instead of doing the work again (a send
-- sent twice). Per user, deleted with the user.

CREATE TABLE idempotency (
	user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	key     TEXT    NOT NULL,
	request TEXT    NOT NULL,
	result  BLOB    NOT NULL,
	created INTEGER NOT NULL,
	expires INTEGER NOT NULL,
	PRIMARY KEY (user_id, key)
) STRICT, WITHOUT ROWID;
