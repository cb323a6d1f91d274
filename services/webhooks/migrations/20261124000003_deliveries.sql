-- Delivery log, written by the webhook worker in batches (RecordAttempts). A delivery is
-- one event sent to one webhook; its id is the stable `webhook-id` header value.
CREATE TABLE deliveries (
    id                 TEXT        PRIMARY KEY,
    -- Insertion order, the pagination cursor (ids are hashes, not time-ordered).
    seq                BIGSERIAL   NOT NULL UNIQUE,
    app_id             TEXT        NOT NULL,
    webhook_id         TEXT        NOT NULL,
    event_id           TEXT        NOT NULL,
    trigger            TEXT        NOT NULL,
    -- `pending`, `succeeded` or `failed`: the outcome of the latest recorded attempt.
    status             TEXT        NOT NULL,
    -- The worker's delivery job, kept once the delivery failed, so it can be re-queued.
    job                JSONB,
    -- Set by RetryDelivery until a worker has re-queued the job on the broker.
    retry_requested_at TIMESTAMPTZ,
    -- When a worker claimed the retry; a claim older than 30 s counts as abandoned.
    retry_claimed_at   TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);

CREATE INDEX deliveries_by_webhook ON deliveries (app_id, webhook_id, seq DESC);
CREATE INDEX deliveries_retry_requested ON deliveries (retry_requested_at)
    WHERE retry_requested_at IS NOT NULL;

-- Every attempt. At-least-once delivery may record an attempt twice; that is shown as is.
CREATE TABLE delivery_attempts (
    seq          BIGSERIAL   PRIMARY KEY,
    delivery_id  TEXT        NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt      INTEGER     NOT NULL,
    attempted_at TIMESTAMPTZ NOT NULL,
    -- `succeeded`, `retrying` or `failed`.
    outcome      TEXT        NOT NULL,
    status_code  INTEGER,
    latency_ms   INTEGER     NOT NULL,
    error        TEXT
);

CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, seq);
