-- How far a sweep that visits every message once has got (issue 12, `message.undelivered`
-- webhooks): the last insertion position (`seq`) it looked at, per sweep. Rows are visited in
-- `seq` order through the primary key, so the sweep needs no index of its own and adds no
-- write to an insert.
CREATE TABLE marks (
    name TEXT    PRIMARY KEY,
    seq  INTEGER NOT NULL
) WITHOUT ROWID;
