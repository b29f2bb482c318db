-- Every identifier the store compares (message, user, conversation and idempotency ids) in
-- byte order (COLLATE "C"), as SQLite's BINARY compares them and as protocol::
-- direct_conversation_id orders a pair's users. Ids are opaque: nobody sorts them
-- linguistically, and a linguistic collation makes every b-tree comparison of these keys
-- a strcoll plus a strcmp tie-break. Postgres takes its memcmp fast path only for "C" (not
-- for "C.UTF-8", nor any en_US-like default), and these keys sit in ten b-trees that every
-- insert descends: the columns' collation is what the inserting transactions' CPU goes to
-- (perf/RESULTS.md §12d, §13a). Only the indexes are rebuilt; the table is not rewritten.
ALTER TABLE messages
    ALTER COLUMN id            TYPE TEXT COLLATE "C",
    ALTER COLUMN sender_id     TYPE TEXT COLLATE "C",
    ALTER COLUMN reciever_id   TYPE TEXT COLLATE "C",
    ALTER COLUMN client_msg_id TYPE TEXT COLLATE "C";
ALTER TABLE counters ALTER COLUMN id TYPE TEXT COLLATE "C";
ALTER TABLE reads
    ALTER COLUMN user_id         TYPE TEXT COLLATE "C",
    ALTER COLUMN conversation_id TYPE TEXT COLLATE "C",
    ALTER COLUMN peer            TYPE TEXT COLLATE "C";
