-- The server API's conversation history (issue 12): a direct conversation's messages are the
-- rows of its two directions, (a → b) and (b → a). Each direction is one range of this index,
-- newest first by `cseq`, so a page of history is two bounded range scans merged, whatever
-- the size of either user's stream; an unread count is one range count. One more b-tree write
-- per insert (perf/RESULTS.md §22 measures it); group messages already have
-- group_messages_order.
CREATE INDEX messages_conversation ON messages (sender_id, reciever_id, cseq);
