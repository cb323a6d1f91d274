-- The relay deletes an outbox row once it is done (published, or handled in process)
-- instead of stamping published_at and purging it a day later: a delete writes no new row
-- version and no index entry. The rows earlier versions stamped go now.
--
-- The partial index on unpublished rows stays although every live row is unpublished now:
-- the relay's claims and backlog counts walk it, and its entries of deleted rows are
-- marked dead on the first walk, while without it they would scan the heap, dead rows
-- and all, until the next vacuum.
DELETE FROM outbox WHERE published_at IS NOT NULL;
