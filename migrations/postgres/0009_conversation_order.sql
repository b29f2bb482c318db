-- The server API's conversation history, as migrations/sqlite/0008_conversation_order.sql:
-- a direct conversation is two directions, each one range of this index in `cseq` order.
-- One more b-tree write per insert; group messages already have group_messages_order.
CREATE INDEX messages_conversation ON messages (sender_id, reciever_id, cseq);
