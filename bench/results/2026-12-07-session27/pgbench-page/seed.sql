DELETE FROM conversations.messages WHERE app_id='pgb';
DELETE FROM conversations.conversations WHERE app_id='pgb';
INSERT INTO conversations.conversations (app_id, id, app_user_id, app_makers) VALUES ('pgb','c100','u100','{}'),('pgb','c10','u10','{}');
INSERT INTO conversations.messages (app_id, conversation_id, id, author_id, role, name, text, received_ms, actions)
SELECT 'pgb', 'c100', 'm'||g, 'u100', 'appUser', 'Some User', repeat('x', 200), 1700000000000+g, '[]' FROM generate_series(1,2000) g;
INSERT INTO conversations.messages (app_id, conversation_id, id, author_id, role, name, text, received_ms, actions)
SELECT 'pgb', 'c10', 'n'||g, 'u10', 'appUser', 'Some User', repeat('x', 200), 1700000000000+g, '[]' FROM generate_series(1,10) g;
ANALYZE conversations.messages; ANALYZE conversations.conversations;
