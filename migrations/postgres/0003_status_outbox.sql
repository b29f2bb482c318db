-- Status events for other services, written in the same transaction as the status change
-- they announce (a transactional outbox) and relayed to Kafka afterwards. An event is
-- deleted only after the broker acknowledged it: a pod that dies between the commit and the
-- relay leaves its events here for the next relay (at least once, in seq order).
CREATE TABLE status_events (
    seq         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  TEXT        NOT NULL,
    status      TEXT        NOT NULL,
    sender_id   TEXT        NOT NULL,
    reciever_id TEXT        NOT NULL,
    at          TIMESTAMPTZ NOT NULL
);
