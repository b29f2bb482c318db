-- Groups (protocol v2, issue 10 item 3; src/backend/store/group.rs says why it looks so).
-- * groups / members: who is in which group; `joined_seq` is the conversation seq of the
--   event that added the member.
-- * group_messages: every group message and membership event, stored once. `status` is
--   the aggregate the sender sees (0 NONE, 1 SENT, 2 DELIVERED to every member);
--   `undelivered` counts the members (the sender aside) not at DELIVERED yet; `read_all`
--   is set once every such member's read receipt reached `cseq`. `event` = 1 for a
--   membership event, whose payload is its JSON.
-- * deliveries: the place a group row takes in each member's stream (their `pos`, from the
--   same stream counter as the direct messages) and that member's delivery status.
CREATE TABLE groups (
    id         TEXT    PRIMARY KEY,
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE members (
    group_id   TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    joined_seq INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members (user_id);

CREATE TABLE group_messages (
    id            TEXT    PRIMARY KEY,
    group_id      TEXT    NOT NULL,
    cseq          INTEGER NOT NULL,
    sender_id     TEXT    NOT NULL,
    client_msg_id TEXT,
    event         INTEGER NOT NULL,
    payload       TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    status        INTEGER NOT NULL DEFAULT 0,
    undelivered   INTEGER NOT NULL,
    read_all      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE UNIQUE INDEX group_messages_order ON group_messages (group_id, cseq);
CREATE UNIQUE INDEX group_messages_keyed ON group_messages (sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE INDEX group_messages_unread ON group_messages (group_id, cseq)
    WHERE read_all = 0 AND event = 0;
-- Retention takes the oldest rows that every member has (status 2) first.
CREATE INDEX group_messages_age ON group_messages (created_at) WHERE status = 2;

CREATE TABLE deliveries (
    user_id    TEXT    NOT NULL,
    pos        INTEGER NOT NULL,
    message_id TEXT    NOT NULL,
    status     INTEGER NOT NULL,
    at         INTEGER,
    PRIMARY KEY (user_id, pos)
) WITHOUT ROWID;
CREATE UNIQUE INDEX deliveries_by_message ON deliveries (message_id, user_id);
