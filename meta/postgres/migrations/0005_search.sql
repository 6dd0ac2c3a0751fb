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
-- Unindexed looks for sent and complete messages without a row.
CREATE INDEX messages_status ON messages (status, created);
