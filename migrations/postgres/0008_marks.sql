-- How far a sweep that visits every message once has got (issue 12, `message.undelivered`
-- webhooks): the last insertion position (`seq`) it looked at, per sweep. The row is locked
-- (SKIP LOCKED) by the pod sweeping, so one pod at a time visits each row; rows are read in
-- `seq` order through the primary key, so no index is added to the insert path.
CREATE TABLE marks (
    name TEXT COLLATE "C" PRIMARY KEY,
    seq  BIGINT NOT NULL
);
