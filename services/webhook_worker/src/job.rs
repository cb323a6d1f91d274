//! The delivery job (one event for one webhook, as it travels through the delivery and
//! retry queues) and the payload it POSTs.

use domain::event::Event;
use domain::model::{AppUser, Message};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The current job schema version.
pub const JOB_VERSION: u32 = 1;

/// One event to deliver to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Schema version, [`JOB_VERSION`].
    pub version: u32,
    /// Stable delivery id, sent as `webhook-id`: see [`delivery_id`].
    pub delivery_id: String,
    /// The app of the event and the webhook.
    pub app_id: String,
    /// The webhook to deliver to; it is looked up again before every attempt.
    pub webhook_id: String,
    /// Attempts already made in this round (0 for a new job).
    pub attempts: u32,
    /// The event.
    pub event: Event,
}

impl Job {
    /// A fresh job for `event` and webhook `webhook_id`.
    pub fn new(event: Event, webhook_id: &str) -> Self {
        Job {
            version: JOB_VERSION,
            delivery_id: delivery_id(&event.id, webhook_id),
            app_id: event.app_id.clone(),
            webhook_id: webhook_id.to_owned(),
            attempts: 0,
            event,
        }
    }

    /// The role of the message event (`appUser`, `appMaker`), if it is one.
    pub fn role(&self) -> Option<&str> {
        message_role(&self.event.trigger)
    }
}

/// The author role of a `message:<role>` trigger.
pub fn message_role(trigger: &str) -> Option<&str> {
    trigger.strip_prefix("message:")
}

/// The delivery id of `event_id` for `webhook_id`: derived, not random, so an event
/// fanned out twice (a worker died before acking it) yields the same `webhook-id` and the
/// receiver can drop the duplicate. 24 hex characters, like every other id.
pub fn delivery_id(event_id: &str, webhook_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(event_id.as_bytes())
        .chain_update(b":")
        .chain_update(webhook_id.as_bytes())
        .finalize();
    hex::encode(&digest[..12])
}

/// The body of a webhook POST: the reference's payload (`event`, `messages`,
/// `appUserId`), then additive fields.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    event: &'a str,
    messages: &'a [Message],
    app_user_id: &'a str,
    trigger: &'a str,
    app: AppRef<'a>,
    app_user: &'a AppUser,
    version: u32,
}

#[derive(Debug, Serialize)]
struct AppRef<'a> {
    #[serde(rename = "_id")]
    id: &'a str,
}

/// Serializes the webhook body of `event`.
pub fn payload(event: &Event) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Payload {
        event: &event.trigger,
        messages: &event.messages,
        app_user_id: &event.app_user.id,
        trigger: &event.trigger,
        app: AppRef { id: &event.app_id },
        app_user: &event.app_user,
        version: event.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_stable_per_event_and_webhook() {
        let a = delivery_id("e1", "w1");
        assert_eq!(a, delivery_id("e1", "w1"));
        assert_ne!(a, delivery_id("e1", "w2"));
        assert!(domain::id::is_id(&a), "{a}");
    }
}
