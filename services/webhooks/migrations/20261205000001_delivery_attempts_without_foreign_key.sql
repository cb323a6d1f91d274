-- The attempts' foreign key to their delivery ran a check query and locked the delivery's
-- row for every attempt recorded (about 3 % of Postgres's CPU per delivered message in the
-- bench). Attempts are written only by `delivery_log::record`, in the transaction that
-- upserts their delivery first, and deliveries are never deleted, so the check could not
-- fail; reads join attempts to deliveries by id as before.
ALTER TABLE delivery_attempts DROP CONSTRAINT IF EXISTS delivery_attempts_delivery_id_fkey;
