-- Presence (protocol v2, issue 10 item 5): the same logical schema as
-- migrations/sqlite/0006_presence.sql. When each user was last seen (a connection of theirs
-- opened or closed); online is the route table's to say, not stored.
CREATE TABLE presence (
    user_id   TEXT COLLATE "C" PRIMARY KEY,
    last_seen TIMESTAMPTZ      NOT NULL
);
