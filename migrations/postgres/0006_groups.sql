-- Groups (protocol v2, issue 10 item 3): the same logical schema as
-- migrations/sqlite/0005_groups.sql, with native types and keys in byte order (0005).
-- src/backend/store/group.rs says why it looks so. Every group operation locks the group's
-- row first (`groups`, FOR UPDATE), then its counters in (kind, id) order like every
-- inserting transaction: one group's operations take turns, different groups never wait
-- for each other, and there is no cluster-wide lock.
CREATE TABLE groups (
    id         TEXT COLLATE "C" PRIMARY KEY,
    created_by TEXT COLLATE "C" NOT NULL,
    created_at TIMESTAMPTZ      NOT NULL
);

CREATE TABLE members (
    group_id   TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    joined_seq BIGINT           NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX members_by_user ON members (user_id);

CREATE TABLE group_messages (
    id            TEXT COLLATE "C" PRIMARY KEY,
    group_id      TEXT COLLATE "C" NOT NULL,
    cseq          BIGINT           NOT NULL,
    sender_id     TEXT COLLATE "C" NOT NULL,
    client_msg_id TEXT COLLATE "C",
    event         SMALLINT         NOT NULL,
    payload       TEXT             NOT NULL,
    created_at    TIMESTAMPTZ      NOT NULL,
    status        TEXT             NOT NULL DEFAULT 'NONE'
                  CHECK (status IN ('NONE', 'SENT', 'DELIVERED')),
    undelivered   BIGINT           NOT NULL,
    read_all      BOOLEAN          NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX group_messages_order ON group_messages (group_id, cseq);
CREATE UNIQUE INDEX group_messages_keyed ON group_messages (sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE INDEX group_messages_unread ON group_messages (group_id, cseq)
    WHERE NOT read_all AND event = 0;
-- Retention takes the oldest rows that every member has first.
CREATE INDEX group_messages_age ON group_messages (created_at) WHERE status = 'DELIVERED';

CREATE TABLE deliveries (
    user_id    TEXT COLLATE "C" NOT NULL,
    pos        BIGINT           NOT NULL,
    message_id TEXT COLLATE "C" NOT NULL,
    status     TEXT             NOT NULL
               CHECK (status IN ('NONE', 'SENT', 'DELIVERED')),
    at         TIMESTAMPTZ,
    PRIMARY KEY (user_id, pos)
);
CREATE UNIQUE INDEX deliveries_by_message ON deliveries (message_id, user_id);
