-- The push delivery log: one row per send attempt the push worker reports (in batches),
-- listed per app newest first. `seq` orders the log (the order rows were recorded); the
-- attempt's own time is `attempted_at`. Rows go with their app.
CREATE TABLE push_attempts (
    seq          BIGSERIAL   PRIMARY KEY,
    id           TEXT        NOT NULL UNIQUE,
    app_id       TEXT        NOT NULL
        CONSTRAINT push_attempts_app_id_fkey REFERENCES apps (id) ON DELETE CASCADE,
    app_user_id  TEXT        NOT NULL,
    device_id    TEXT        NOT NULL,
    platform     TEXT        NOT NULL,
    provider     TEXT        NOT NULL,
    -- delivered, unregistered, retrying, dead or failed.
    status       TEXT        NOT NULL,
    error        TEXT,
    message_id   TEXT        NOT NULL,
    attempt      INTEGER     NOT NULL,
    attempted_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX push_attempts_app_id_seq_idx ON push_attempts (app_id, seq DESC);
