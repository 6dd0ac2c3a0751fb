-- 0005: the search index (meta.SearchDoc, docs/PROTOCOL.md §8.19): the words
-- (meta.SearchText) of From, To and Cc, Subject and the text bodies of each
-- indexed message, and their tsvector (the 'simple' configuration: no
-- stemming, no stop words, as the other stores match) under a GIN index.
-- Deleting a message (or its user) cascades.
CREATE TABLE message_text (
	message_id     text COLLATE "C" PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
	from_          text    NOT NULL,
	to_            text    NOT NULL,
	subject        text    NOT NULL,
	body           text    NOT NULL,
	has_attachment boolean NOT NULL,
	words          tsvector GENERATED ALWAYS AS (to_tsvector('simple', from_ || ' ' || to_ || ' ' || subject || ' ' || body)) STORED
);
CREATE INDEX message_text_words ON message_text USING GIN (words);
-- indexed is true once IndexMessage has run for the message: Unindexed walks
-- the partial index of the others (only IndexMessage writes the column).
ALTER TABLE messages ADD COLUMN indexed boolean NOT NULL DEFAULT false;
CREATE INDEX messages_unindexed ON messages (created, id) WHERE NOT indexed AND status IN ('sent', 'complete');
