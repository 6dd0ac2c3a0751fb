-- 0011: the search index (meta.SearchDoc, docs/PROTOCOL.md §8.19). One row
-- of message_text per indexed message, its docid the rowid of the FTS5
-- table message_fts that holds the words (meta.SearchText) of From, To and
-- Cc, Subject and the text bodies. Deleting a message (or its user)
-- cascades to message_text, whose trigger removes the words. The prefix
-- indexes of 2 to 4 characters keep a short prefix (search as you type)
-- from merging the doclists of every word it begins.
CREATE TABLE message_text (
	docid          INTEGER PRIMARY KEY,
	message_id     TEXT    NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
	has_attachment INTEGER NOT NULL
) STRICT;
CREATE VIRTUAL TABLE message_fts USING fts5(from_, to_, subject, body, tokenize = 'unicode61 remove_diacritics 0', prefix = '2 3 4');
CREATE TRIGGER message_text_deleted AFTER DELETE ON message_text BEGIN
	DELETE FROM message_fts WHERE rowid = old.docid;
END;
-- indexed is 1 once IndexMessage has run for the message: Unindexed walks
-- the partial index of the others (only IndexMessage writes the column).
ALTER TABLE messages ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_unindexed ON messages (created, id) WHERE indexed = 0 AND status IN ('sent', 'complete');
