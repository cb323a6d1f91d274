-- What an app maker configures beyond keys: settings (a JSON object merged over the
-- defaults, e.g. the Web Messenger's look under `web`), the persistent menu (a JSON array
-- of validated items) and integrations (one per type; public fields and secrets apart, so
-- no query that answers the API ever reads a secret).
ALTER TABLE apps
    ADD COLUMN settings JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN menu     JSONB NOT NULL DEFAULT '[]',
    ADD CONSTRAINT apps_settings_size CHECK (pg_column_size(settings) <= 16384),
    ADD CONSTRAINT apps_menu_size CHECK (pg_column_size(menu) <= 16384);

CREATE TABLE integrations (
    app_id     TEXT        NOT NULL
        CONSTRAINT integrations_app_id_fkey REFERENCES apps (id) ON DELETE CASCADE,
    id         TEXT        NOT NULL,
    type       TEXT        NOT NULL,
    -- The fields the API shows (sender ids, flags, bundle ids).
    config     JSONB       NOT NULL DEFAULT '{}',
    -- The fields it never shows (keys, certificates, passwords, tokens).
    secrets    JSONB       NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, id),
    CONSTRAINT integrations_app_id_type_key UNIQUE (app_id, type)
);
