//! The webhook-worker role: fans events out to the matching webhooks and delivers them, with
//! retries held by the broker.
