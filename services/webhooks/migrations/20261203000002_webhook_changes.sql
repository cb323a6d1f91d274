-- Every change to an app's webhooks is announced on the `smooch_webhooks_changed` channel
-- (payload: the app id) when its transaction commits, whoever made it: the webhooks
-- service relays the announcements to the workers, which drop their cached copy, so a
-- change governs the very next message.
CREATE OR REPLACE FUNCTION webhooks_announce_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('smooch_webhooks_changed', COALESCE(NEW.app_id, OLD.app_id));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER webhooks_changed
    AFTER INSERT OR UPDATE OR DELETE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION webhooks_announce_change();
