-- distriSocks message table (embedded store, SQLite dialect).
-- The Postgres dialect in migrations/postgres/ carries the same logical schema:
-- the same columns, constraints and indexes, with native types.
CREATE TABLE messages (
    -- Insertion order; offline replay follows it.
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- UUIDv7 chosen by the receiving pod; what clients see as "id".
    id            TEXT    NOT NULL UNIQUE,
    sender_id     TEXT    NOT NULL,
    reciever_id   TEXT    NOT NULL,
    -- Optional per-sender idempotency key: a resend returns the first message's id.
    client_msg_id TEXT,
    payload       TEXT    NOT NULL,
    status        TEXT    NOT NULL DEFAULT 'NONE'
                  CHECK (status IN ('NONE', 'SENT', 'DELIVERED')),
    -- Microseconds since the Unix epoch.
    created_at    INTEGER NOT NULL,
    sent_at       INTEGER,
    delivered_at  INTEGER
);

-- NULL client_msg_ids never collide (NULLs are distinct in both SQLite and Postgres).
CREATE UNIQUE INDEX messages_sender_client_msg_id ON messages (sender_id, client_msg_id);

-- Replay of undelivered messages to a connecting recipient.
CREATE INDEX messages_pending ON messages (reciever_id, seq) WHERE status <> 'DELIVERED';
