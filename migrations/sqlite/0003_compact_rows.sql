-- Fewer b-tree writes per message (issue 9). Before: every insert wrote the table, five
-- indexes and the AUTOINCREMENT counter in sqlite_sequence; SENT and DELIVERED rewrote three
-- partial indexes each. After: the table and three indexes per insert, one index per status
-- change.
-- * seq stays the rowid but without AUTOINCREMENT: a new row takes max(seq) + 1, which is
--   the same order because rows are never deleted (a retention that deletes must keep the
--   newest row, or bring the counter back).
-- * id is the UUID's 16 bytes instead of 36 characters of text when it is a UUID in the
--   canonical form the pod assigns (lowercase, hyphenated); any other id stays text, so
--   the store keeps every id exactly as it was given.
-- * status is 0 (NONE), 1 (SENT), 2 (DELIVERED), compared as numbers.
-- * (sender_id, client_msg_id) is indexed only for rows that have a client_msg_id.
-- * The redrive's stuck indexes are gone: the embedded pod never redrives (that is the
--   distributed mode, on Postgres), so claim_stuck scans here.
-- The whole table is copied once, inside the migration's transaction.
CREATE TABLE messages_v3 (
    seq           INTEGER PRIMARY KEY,
    id            BLOB    NOT NULL UNIQUE,
    sender_id     TEXT    NOT NULL,
    reciever_id   TEXT    NOT NULL,
    client_msg_id TEXT,
    payload       TEXT    NOT NULL,
    status        INTEGER NOT NULL DEFAULT 0 CHECK (status IN (0, 1, 2)),
    created_at    INTEGER NOT NULL,
    sent_at       INTEGER,
    delivered_at  INTEGER,
    stuck_since   INTEGER
);

INSERT INTO messages_v3
SELECT seq,
       CASE WHEN length(id) = 36 AND id = lower(id)
                 AND substr(id, 9, 1) = '-' AND substr(id, 14, 1) = '-'
                 AND substr(id, 19, 1) = '-' AND substr(id, 24, 1) = '-'
                 AND length(replace(id, '-', '')) = 32
                 AND unhex(replace(id, '-', '')) IS NOT NULL
            THEN unhex(replace(id, '-', '')) ELSE id END,
       sender_id, reciever_id, client_msg_id, payload,
       CASE status WHEN 'NONE' THEN 0 WHEN 'SENT' THEN 1 WHEN 'DELIVERED' THEN 2 END,
       created_at, sent_at, delivered_at, stuck_since
FROM messages ORDER BY seq;

DROP TABLE messages;
ALTER TABLE messages_v3 RENAME TO messages;
DELETE FROM sqlite_sequence WHERE name = 'messages';

CREATE UNIQUE INDEX messages_sender_client_msg_id ON messages (sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_pending ON messages (reciever_id, seq) WHERE status < 2;

-- For people (and tests) reading the file with the sqlite3 shell: the rows as they read
-- before, ids as text and statuses by name.
CREATE VIEW messages_readable AS
SELECT seq,
       CASE typeof(id) WHEN 'text' THEN id ELSE
       lower(substr(hex(id), 1, 8) || '-' || substr(hex(id), 9, 4) || '-' ||
             substr(hex(id), 13, 4) || '-' || substr(hex(id), 17, 4) || '-' ||
             substr(hex(id), 21)) END AS id,
       sender_id, reciever_id, client_msg_id, payload,
       CASE status WHEN 0 THEN 'NONE' WHEN 1 THEN 'SENT' ELSE 'DELIVERED' END AS status,
       created_at, sent_at, delivered_at, stuck_since
FROM messages;
