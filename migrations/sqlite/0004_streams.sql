-- Protocol v2 (issue 10): every message gets three gapless positions, and one table holds the
-- counters they come from.
-- * rpos / spos: the message's place in its recipient's and its sender's *stream*. A user's
--   stream numbers everything they receive or send, 1, 2, 3, ... in commit order; a device's
--   whole sync cursor is one such number. A message to oneself has one place (spos = rpos).
-- * cseq: its place in its conversation (a 1:1 conversation is the pair of its users).
-- * counters: the last position handed out per conversation (kind 2, id = the conversation
--   id), bumped in the inserting transaction and only for rows really inserted (an idempotent
--   repeat takes no position), so positions have no holes; and how far retention deleted a
--   stream (kind 1, id = user, `pruned`). A stream's last position is not a row here: it is
--   the highest of its two indexes and `pruned` (fewer pages written per insert), so kind 1
--   rows exist only once retention deleted something and their `last` is unused.
-- Existing rows are numbered in their insertion order (seq), which was commit order.
-- v1 replay now follows rpos instead of the global seq: the same order for one recipient.
CREATE TABLE counters (
    kind   INTEGER NOT NULL,
    id     TEXT    NOT NULL,
    last   INTEGER NOT NULL,
    pruned INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;

ALTER TABLE messages ADD COLUMN rpos INTEGER;
ALTER TABLE messages ADD COLUMN spos INTEGER;
ALTER TABLE messages ADD COLUMN cseq INTEGER;

CREATE TEMP TABLE stream_backfill AS
SELECT seq, role, row_number() OVER (PARTITION BY user_id ORDER BY seq) AS pos FROM (
    SELECT seq, reciever_id AS user_id, 0 AS role FROM messages
    UNION ALL
    SELECT seq, sender_id, 1 FROM messages WHERE sender_id <> reciever_id);
CREATE INDEX temp.stream_backfill_seq ON stream_backfill (seq, role);

UPDATE messages SET rpos = b.pos FROM stream_backfill b WHERE b.seq = messages.seq AND b.role = 0;
UPDATE messages SET spos = CASE WHEN sender_id = reciever_id THEN rpos
    ELSE (SELECT b.pos FROM stream_backfill b WHERE b.seq = messages.seq AND b.role = 1) END;
DROP TABLE stream_backfill;

-- The conversation id as protocol::direct_conversation_id spells it (ids compared bytewise,
-- the length in bytes).
CREATE TEMP TABLE conversation_backfill AS
SELECT seq, 'dm:' || length(CAST(lo AS BLOB)) || ':' || lo || ':' || hi AS conversation,
       row_number() OVER (PARTITION BY lo, hi ORDER BY seq) AS cseq
FROM (SELECT seq, min(sender_id, reciever_id) AS lo, max(sender_id, reciever_id) AS hi
      FROM messages);
UPDATE messages SET cseq = b.cseq FROM conversation_backfill b WHERE b.seq = messages.seq;

INSERT INTO counters (kind, id, last)
SELECT 2, conversation, max(cseq) FROM conversation_backfill GROUP BY conversation;
DROP TABLE conversation_backfill;


-- Read receipts: how far each user has read each conversation (a cumulative seq that never
-- goes backwards and never passes the conversation's last seq). `peer` is the other member,
-- so a syncing device finds both its user's receipts and the ones about them.
CREATE TABLE reads (
    user_id         TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    peer            TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
) WITHOUT ROWID;
CREATE INDEX reads_by_peer ON reads (peer);

DROP INDEX messages_pending;
CREATE INDEX messages_pending ON messages (reciever_id, rpos) WHERE status < 2;
CREATE UNIQUE INDEX messages_received ON messages (reciever_id, rpos);
CREATE UNIQUE INDEX messages_sent ON messages (sender_id, spos);

DROP VIEW messages_readable;
CREATE VIEW messages_readable AS
SELECT seq,
       CASE typeof(id) WHEN 'text' THEN id ELSE
       lower(substr(hex(id), 1, 8) || '-' || substr(hex(id), 9, 4) || '-' ||
             substr(hex(id), 13, 4) || '-' || substr(hex(id), 17, 4) || '-' ||
             substr(hex(id), 21)) END AS id,
       sender_id, reciever_id, client_msg_id, payload,
       CASE status WHEN 0 THEN 'NONE' WHEN 1 THEN 'SENT' ELSE 'DELIVERED' END AS status,
       created_at, sent_at, delivered_at, stuck_since, rpos, spos, cseq
FROM messages;
