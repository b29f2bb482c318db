-- Protocol v2 (issue 10), the same logical change as migrations/sqlite/0004_streams.sql:
-- three gapless positions per message and the counters they come from.
-- * rpos (was rseq) / spos: the message's place in its recipient's and its sender's stream
--   (everything a user receives or sends, in commit order); a device's sync cursor is one
--   such number. A message to oneself has one place (spos = rpos).
-- * cseq: its place in its conversation.
-- * counters replaces recipients: kind 1 = a user's stream, kind 2 = a conversation; `last`
--   is the last position handed out, `pruned` how far retention deleted a stream. The
--   inserting transaction locks the rows it needs in (kind, id) order and holds them until
--   COMMIT, so for one user a larger position never becomes visible before a smaller one,
--   and it bumps them only for rows it really inserts: no holes (rseq had one per duplicate).
-- Existing rows are renumbered from 1 per stream and conversation in seq order. The old
-- pods' code writes rseq through `recipients`, which is gone: stop every pod of the previous
-- version before the first pod of this one starts (the migration runs at its startup).
CREATE TABLE counters (
    kind   SMALLINT NOT NULL,
    id     TEXT     NOT NULL,
    last   BIGINT   NOT NULL,
    pruned BIGINT   NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, id)
);

ALTER TABLE messages RENAME COLUMN rseq TO rpos;
ALTER TABLE messages ADD COLUMN spos BIGINT, ADD COLUMN cseq BIGINT;

CREATE TEMP TABLE stream_backfill ON COMMIT DROP AS
SELECT seq, role, row_number() OVER (PARTITION BY user_id ORDER BY seq) AS pos FROM (
    SELECT seq, reciever_id AS user_id, 0 AS role FROM messages
    UNION ALL
    SELECT seq, sender_id, 1 FROM messages WHERE sender_id <> reciever_id) r;
UPDATE messages m SET rpos = b.pos FROM stream_backfill b WHERE b.seq = m.seq AND b.role = 0;
UPDATE messages m SET spos = m.rpos WHERE m.sender_id = m.reciever_id;
UPDATE messages m SET spos = b.pos FROM stream_backfill b WHERE b.seq = m.seq AND b.role = 1;

-- protocol::direct_conversation_id: ids compared bytewise (COLLATE "C"), length in bytes.
CREATE TEMP TABLE conversation_backfill ON COMMIT DROP AS
SELECT seq, 'dm:' || octet_length(lo) || ':' || lo || ':' || hi AS conversation,
       row_number() OVER (PARTITION BY lo, hi ORDER BY seq) AS cseq
FROM (SELECT seq, LEAST(sender_id COLLATE "C", reciever_id COLLATE "C") AS lo,
             GREATEST(sender_id COLLATE "C", reciever_id COLLATE "C") AS hi
      FROM messages) p;
UPDATE messages m SET cseq = b.cseq FROM conversation_backfill b WHERE b.seq = m.seq;

INSERT INTO counters (kind, id, last)
SELECT 2, conversation, max(cseq) FROM conversation_backfill GROUP BY conversation;
INSERT INTO counters (kind, id, last)
SELECT 1, user_id, max(pos) FROM (
    SELECT reciever_id AS user_id, rpos AS pos FROM messages
    UNION ALL
    SELECT sender_id, spos FROM messages) s
GROUP BY user_id;
DROP TABLE recipients;

-- Read receipts: how far each user has read each conversation (a cumulative seq that never
-- goes backwards and never passes the conversation's last seq). `peer` is the other member,
-- so a syncing device finds both its user's receipts and the ones about them.
CREATE TABLE reads (
    user_id         TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    peer            TEXT   NOT NULL,
    seq             BIGINT NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);
CREATE INDEX reads_by_peer ON reads (peer);

ALTER TABLE messages ALTER COLUMN spos SET NOT NULL, ALTER COLUMN cseq SET NOT NULL;
CREATE UNIQUE INDEX messages_received ON messages (reciever_id, rpos);
CREATE UNIQUE INDEX messages_sent ON messages (sender_id, spos);
