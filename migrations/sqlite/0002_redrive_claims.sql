-- Claimed redrive, as in migrations/postgres/0002_recipient_order.sql. SQLite keeps the
-- global seq as the replay order: one writer commits in seq order, so it is also the
-- per-recipient commit order that replay needs.
-- stuck_since: when the row was last claimed (NULL: never; 9223372036854775807: parked).
ALTER TABLE messages ADD COLUMN stuck_since INTEGER;
CREATE INDEX messages_stuck_none ON messages (COALESCE(stuck_since, created_at)) WHERE status = 'NONE';
CREATE INDEX messages_stuck_sent ON messages (COALESCE(stuck_since, sent_at)) WHERE status = 'SENT';
