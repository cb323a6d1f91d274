-- Read state: appMaker messages the app user has not read, and when each side last read.
ALTER TABLE conversations
    ADD COLUMN unread_count           BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN app_user_last_read_ms  BIGINT,
    ADD COLUMN app_maker_last_read_ms BIGINT;

-- Every action button of every message, so that a postback finds its action (and the
-- message and conversation holding it) by primary key instead of searching JSON.
CREATE TABLE message_actions (
    app_id          TEXT NOT NULL,
    id              TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    PRIMARY KEY (app_id, id)
);
-- A merge moves a conversation's actions along with its messages.
CREATE INDEX message_actions_conversation ON message_actions (app_id, conversation_id);

-- Merges already applied: the key makes MergeConversations idempotent.
CREATE TABLE merges (
    app_id           TEXT        NOT NULL,
    from_app_user_id TEXT        NOT NULL,
    into_app_user_id TEXT        NOT NULL,
    merged_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, from_app_user_id)
);

-- Whispers: messages an app maker sets up to be posted when an app user triggers an event,
-- optionally only on devices of one platform and/or app version.
CREATE TABLE whispers (
    app_id      TEXT        NOT NULL,
    id          TEXT        NOT NULL,
    event       TEXT        NOT NULL,
    text        TEXT        NOT NULL,
    actions     JSONB       NOT NULL DEFAULT '[]',
    name        TEXT,
    avatar_url  TEXT,
    platform    TEXT,
    app_version TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, id)
);
-- TrackEvent finds the whispers of an event name.
CREATE INDEX whispers_event ON whispers (app_id, event);

-- Which whisper reached which app user: a whisper fires at most once per user.
CREATE TABLE whisper_deliveries (
    app_id       TEXT        NOT NULL,
    whisper_id   TEXT        NOT NULL,
    app_user_id  TEXT        NOT NULL,
    delivered_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, whisper_id, app_user_id),
    FOREIGN KEY (app_id, whisper_id) REFERENCES whispers (app_id, id) ON DELETE CASCADE
);
