\set lim 11
SELECT id, app_makers, unread_count, app_user_last_read_ms, app_maker_last_read_ms FROM conversations.conversations WHERE app_id = 'pgb' AND app_user_id = 'u10';
SELECT id, author_id, role, name, email, avatar_url, text, media_url, media_type, COALESCE(metadata::text, '') AS metadata_json, actions::text AS actions_json, received_ms, source_type, source_id FROM conversations.messages WHERE app_id = 'pgb' AND conversation_id = 'c10' AND received_ms < 9223372036854775807 ORDER BY received_ms DESC, seq DESC LIMIT :lim;
