-- The platform or channel that sent each message, and the sending device: the Web
-- Messenger skips echoes of its own messages by `source.id`. Messages stored before this
-- came through the API.
ALTER TABLE messages
    ADD COLUMN source_type TEXT NOT NULL DEFAULT 'api',
    ADD COLUMN source_id TEXT NULL;
