-- Webhook subscriptions. Every lookup is scoped by app: the primary key is (app_id, id) so
-- a webhook id of another app is simply not found.
CREATE TABLE webhooks (
    app_id     TEXT        NOT NULL,
    id         TEXT        NOT NULL,
    target     TEXT        NOT NULL,
    events     TEXT[]      NOT NULL,
    secret     TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, id)
);
