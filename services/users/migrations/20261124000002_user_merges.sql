-- App users merged into others: when an anonymous user logs in on its device with a userId
-- that already belongs to another app user, the anonymous user is folded into that one and
-- deleted. Its `_id` keeps resolving to the survivor through this table, and the row stays
-- pending (settled_at NULL) until the conversations service has moved its history, so a
-- crash between the two steps is re-driven by the survivor's next init.
CREATE TABLE user_merges (
    app_id           TEXT        NOT NULL
        CONSTRAINT user_merges_app_id_fkey REFERENCES apps (id) ON DELETE CASCADE,
    from_app_user_id TEXT        NOT NULL,
    into_app_user_id TEXT        NOT NULL,
    merged_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    settled_at       TIMESTAMPTZ,
    PRIMARY KEY (app_id, from_app_user_id)
);
-- Init lists the survivor's pending merges.
CREATE INDEX user_merges_pending_idx ON user_merges (app_id, into_app_user_id)
    WHERE settled_at IS NULL;
