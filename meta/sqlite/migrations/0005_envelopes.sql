-- 0005: the envelope a received copy arrived with (docs/PROTOCOL.md §12):
-- the placeholder exactly as received and the chain of signed envelope
-- headers, which a forward of that copy extends. Local messages have none.

CREATE TABLE envelopes (
	message_id TEXT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
	envelope   BLOB NOT NULL
) STRICT, WITHOUT ROWID;
