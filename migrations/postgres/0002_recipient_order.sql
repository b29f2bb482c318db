-- Per-recipient order instead of a cluster-wide insert lock, and claimed redrive.
--
-- Until 0001, every inserting transaction of every pod took one advisory lock so that the
-- global `seq` followed commit order, which replay's cursor relied on. That lock made the
-- cluster commit one inserting batch at a time. Replay only needs commit order *per
-- recipient*: `rseq` is handed out from the recipient's row in `recipients`, whose row lock
-- is held until COMMIT, so two transactions for the same recipient take turns and
-- transactions for different recipients never wait for each other.
CREATE TABLE recipients (
    user_id  TEXT   PRIMARY KEY,
    -- The last rseq handed out for this recipient (gaps are allowed: a rolled back or
    -- duplicate insert leaves one).
    last_seq BIGINT NOT NULL
);

ALTER TABLE messages ADD COLUMN rseq BIGINT;
-- Under the old lock the global seq followed commit order, so it is a valid per-recipient
-- order for every existing row; new rows continue above it.
UPDATE messages SET rseq = seq;
ALTER TABLE messages ALTER COLUMN rseq SET NOT NULL;
INSERT INTO recipients (user_id, last_seq)
    SELECT reciever_id, max(seq) FROM messages GROUP BY reciever_id;

DROP INDEX messages_pending;
CREATE INDEX messages_pending ON messages (reciever_id, rseq) WHERE status <> 'DELIVERED';

-- The redrive claims stuck messages: `stuck_since` is when a pod last claimed the row
-- (NULL: never, the stuck clock counts from created_at for NONE and sent_at for SENT;
-- 'infinity': parked, the recipient had no live connection and replay will deliver it). One
-- partial index per status, ordered by that instant: a sweep reads the oldest claimable
-- rows without sorting the backlog.
ALTER TABLE messages ADD COLUMN stuck_since TIMESTAMPTZ;
DROP INDEX messages_stuck_none;
DROP INDEX messages_stuck_sent;
CREATE INDEX messages_stuck_none ON messages ((COALESCE(stuck_since, created_at))) WHERE status = 'NONE';
CREATE INDEX messages_stuck_sent ON messages ((COALESCE(stuck_since, sent_at))) WHERE status = 'SENT';
