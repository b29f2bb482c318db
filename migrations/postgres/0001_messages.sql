-- distriSocks message table (distributed store, Postgres dialect).
-- The same logical schema as migrations/sqlite/0001_messages.sql: the same columns,
-- constraints and indexes, with native types. Unqualified names: the store sets
-- search_path to its schema before applying migrations.
CREATE TABLE messages (
    -- Insertion order; offline replay follows it. The store serializes inserting
    -- transactions so that seq order is also commit order across pods.
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- UUIDv7 chosen by the receiving pod; what clients see as "id".
    id            TEXT        NOT NULL UNIQUE,
    sender_id     TEXT        NOT NULL,
    reciever_id   TEXT        NOT NULL,
    -- Optional per-sender idempotency key: a resend returns the first message's id.
    client_msg_id TEXT,
    payload       TEXT        NOT NULL,
    status        TEXT        NOT NULL DEFAULT 'NONE'
                  CHECK (status IN ('NONE', 'SENT', 'DELIVERED')),
    -- Microsecond precision, like the SQLite schema's integer microseconds.
    created_at    TIMESTAMPTZ NOT NULL,
    sent_at       TIMESTAMPTZ,
    delivered_at  TIMESTAMPTZ
);

-- NULL client_msg_ids never collide (NULLs are distinct in both SQLite and Postgres).
CREATE UNIQUE INDEX messages_sender_client_msg_id ON messages (sender_id, client_msg_id);

-- Replay of undelivered messages to a connecting recipient.
CREATE INDEX messages_pending ON messages (reciever_id, seq) WHERE status <> 'DELIVERED';

-- The redrive's stuck() scan: one small partial index per non-final status, so the bulk of
-- the table (DELIVERED rows) is never indexed twice. The OR of both becomes a BitmapOr.
CREATE INDEX messages_stuck_none ON messages (created_at) WHERE status = 'NONE';
CREATE INDEX messages_stuck_sent ON messages (sent_at) WHERE status = 'SENT';
