-- Presence (protocol v2, issue 10 item 5): when each user was last seen, i.e. when one of
-- their connections last opened or closed (microseconds). Whether a user is online is not
-- stored: the route table knows it (and forgets a dead pod's connections within a lease).
CREATE TABLE presence (
    user_id   TEXT    PRIMARY KEY,
    last_seen INTEGER NOT NULL
) WITHOUT ROWID;
