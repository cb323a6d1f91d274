-- Conversations: one per app user. Every lookup is scoped by app: the keys start with
-- app_id so that ids of another app are simply not found, and so that the schema can later
-- be partitioned by app.
CREATE TABLE conversations (
    app_id      TEXT        NOT NULL,
    id          TEXT        NOT NULL,
    app_user_id TEXT        NOT NULL,
    -- Ids of the app makers who posted, in order of first message.
    app_makers  TEXT[]      NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, id),
    -- The get-or-create of a message write relies on this (INSERT ... ON CONFLICT).
    CONSTRAINT conversations_app_user_key UNIQUE (app_id, app_user_id)
);

CREATE TABLE messages (
    app_id          TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    -- Insertion order: breaks ties between messages received in the same millisecond.
    seq             BIGSERIAL,
    id              TEXT    NOT NULL,
    author_id       TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    name            TEXT,
    email           TEXT,
    avatar_url      TEXT,
    text            TEXT    NOT NULL,
    media_url       TEXT,
    media_type      TEXT,
    metadata        JSONB,
    actions         JSONB   NOT NULL DEFAULT '[]',
    received_ms     BIGINT  NOT NULL,
    PRIMARY KEY (app_id, id),
    FOREIGN KEY (app_id, conversation_id) REFERENCES conversations (app_id, id)
);

-- A page of the latest messages is one backward range scan of this index, whatever the
-- conversation's length.
CREATE INDEX messages_page ON messages (app_id, conversation_id, received_ms, seq);

-- App user events (POST /v1/appusers/{id}/events).
CREATE TABLE events (
    seq         BIGSERIAL   PRIMARY KEY,
    app_id      TEXT        NOT NULL,
    app_user_id TEXT        NOT NULL,
    name        TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX events_app_user ON events (app_id, app_user_id, created_at);

-- Transactional outbox: a message and its event commit together; a relay publishes the
-- rows to RabbitMQ (in seq order) and stamps published_at.
CREATE TABLE outbox (
    seq          BIGSERIAL   PRIMARY KEY,
    -- The event's stable id, the same on every redelivery.
    event_id     TEXT        NOT NULL UNIQUE,
    app_id       TEXT        NOT NULL,
    -- The routing key, such as `message:appUser`.
    trigger      TEXT        NOT NULL,
    -- The `domain::event::Event`, serialized.
    payload      JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);

-- The relay's work queue: only unpublished rows, so it stays small.
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
