-- Parked messages are looked at again once their age has doubled (MessageStore::park):
-- rows that earlier pods parked for good ('infinity') are due once, now, and parked again
-- with the back-off if their recipient is still away.
UPDATE messages SET stuck_since = now() WHERE stuck_since = 'infinity';
