-- Apps (tenants). The app token is sent in the `app-token` header by browsers and mobile
-- clients, so it is looked up on every such request: it carries a unique index.
CREATE TABLE apps (
    id         TEXT        PRIMARY KEY,
    name       TEXT        NOT NULL,
    app_token  TEXT        NOT NULL CONSTRAINT apps_app_token_key UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Secret keys. A key's id is the JWT `kid`, looked up by primary key on every JWT request.
-- App-scope keys belong to one app and go with it; account-scope keys (the operator's) have
-- no app.
CREATE TABLE keys (
    id         TEXT        PRIMARY KEY,
    app_id     TEXT        CONSTRAINT keys_app_id_fkey REFERENCES apps (id) ON DELETE CASCADE,
    name       TEXT        NOT NULL,
    secret     TEXT        NOT NULL,
    scope      TEXT        NOT NULL CONSTRAINT keys_scope_check CHECK (scope IN ('app', 'account')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- An app key always names its app, an account key never does.
    CONSTRAINT keys_scope_app_check CHECK ((scope = 'account') = (app_id IS NULL))
);
CREATE INDEX keys_app_id_idx ON keys (app_id);

-- End users of an app. `user_id` is the optional, developer-chosen id; several anonymous
-- users (NULL user_id) may coexist because NULLs are distinct in a unique constraint.
CREATE TABLE app_users (
    app_id               TEXT        NOT NULL
        CONSTRAINT app_users_app_id_fkey REFERENCES apps (id) ON DELETE CASCADE,
    id                   TEXT        NOT NULL,
    user_id              TEXT,
    given_name           TEXT,
    surname              TEXT,
    email                TEXT,
    signed_up_at         TIMESTAMPTZ NOT NULL,
    properties           JSONB       NOT NULL DEFAULT '{}',
    conversation_started BOOLEAN     NOT NULL DEFAULT false,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, id),
    CONSTRAINT app_users_app_id_user_id_key UNIQUE (app_id, user_id),
    -- Each update is checked against the 16 KiB limit before it is merged in; this backstop
    -- stops many small merges from growing the object without bound. It is looser than the
    -- API limit because jsonb's text form adds spaces.
    CONSTRAINT app_users_properties_size CHECK (octet_length(properties::text) <= 32768)
);

-- The devices each app user runs the app on. A device shared by several users (logins on
-- one phone) has one row per user; `active` marks the most recent user to init on it.
CREATE TABLE devices (
    app_id      TEXT        NOT NULL,
    app_user_id TEXT        NOT NULL,
    device_id   TEXT        NOT NULL,
    platform    TEXT        NOT NULL,
    app_version TEXT,
    push_token  TEXT,
    info        JSONB       NOT NULL DEFAULT '{}',
    active      BOOLEAN     NOT NULL DEFAULT true,
    last_seen   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (app_id, app_user_id, device_id),
    CONSTRAINT devices_app_user_fkey FOREIGN KEY (app_id, app_user_id)
        REFERENCES app_users (app_id, id) ON DELETE CASCADE,
    -- Same backstop as app_users.properties, for merged device info.
    CONSTRAINT devices_info_size CHECK (octet_length(info::text) <= 32768)
);
-- Init finds a device's users by device id.
CREATE INDEX devices_app_id_device_id_idx ON devices (app_id, device_id);
