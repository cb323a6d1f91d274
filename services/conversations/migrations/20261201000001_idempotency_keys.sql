-- Idempotency keys of message posts (the `Idempotency-Key` header). The first response of a
-- keyed request is stored in the same transaction as its message, so a retried request
-- gets that response back instead of posting again, whatever crashed in between. Keys are
-- scoped by app and app user and kept 24 h.
CREATE TABLE idempotency_keys (
    app_id       TEXT        NOT NULL,
    app_user_id  TEXT        NOT NULL,
    key          TEXT        NOT NULL,
    -- Fingerprint of the client's request: the same key with another request is refused.
    request_hash TEXT        NOT NULL,
    -- The message the request posted.
    message_id   TEXT        NOT NULL,
    -- The `PostMessageResponse` as protobuf bytes, replayed as is.
    response     BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, app_user_id, key)
);

-- The hourly cleanup deletes expired keys by age.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
