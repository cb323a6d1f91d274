-- The relay deletes an outbox row once it is done (published, or handled in process)
-- instead of stamping published_at and purging it a day later: a delete writes no new row
-- version and no index entry. The rows earlier versions stamped go now.
DELETE FROM outbox WHERE published_at IS NOT NULL;

-- Every row left is on its way: the partial index on unpublished rows only repeated the
-- primary key, at one more index entry per event.
DROP INDEX IF EXISTS outbox_unpublished;
