//! The versioned event that message writes put in the outbox and the bus carries to the
//! webhook worker. Routing key = `trigger`. Version 1 grew additively: `postbacks`, `merge`
//! and `read` are absent from events that do not need them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use domain::AppUserId;

use crate::model::{AppUser, Message};

/// The current event schema version.
pub const EVENT_VERSION: u32 = 1;

/// An app event, as published on `{prefix}.events` with routing key `trigger`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Schema version, [`EVENT_VERSION`].
    pub version: u32,
    /// Stable event id (24 hex), the same on every redelivery.
    pub id: String,
    /// The app the event belongs to.
    pub app_id: String,
    /// `message:appUser`, `message:appMaker`, ...
    pub trigger: String,
    /// Milliseconds since the epoch when the event happened.
    pub created_at_ms: i64,
    /// The app user concerned.
    pub app_user: AppUser,
    /// The message(s) of a message event (and of `conversation:start`, the first message).
    #[serde(default)]
    pub messages: Vec<Message>,
    /// For `postback`: the tapped action(s), each with its message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub postbacks: Vec<Postback>,
    /// For `merge:appUser`: which app user was merged into which.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<Merge>,
    /// For `conversation:read`: who read the conversation, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<Read>,
    /// For a message event: the conversation's unread count (app-maker messages the app
    /// user has not read) once this message was written. Internal (push badges): webhook
    /// payloads leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread_count: Option<i64>,
}

/// A postback: an action the app user tapped, and the message that carried it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Postback {
    /// The message whose action was tapped.
    pub message: Message,
    /// The action, as stored (`_id`, `type`, `text`, `payload`, ...).
    pub action: Value,
}

/// Two app users merged into one (an anonymous user who logged in as a known userId).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Merge {
    /// The app user that remains (the owner of the userId).
    pub surviving_app_user_id: AppUserId,
    /// The app user merged away; its `_id` now resolves to the survivor.
    pub discarded_app_user_id: AppUserId,
}

/// A conversation read by one side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Read {
    /// `appUser` or `appMaker`: the side that read.
    pub role: String,
    /// Seconds since the epoch (millisecond precision) of the read.
    pub last_read: f64,
}

impl Event {
    /// A new event (fresh id, current schema version) with no messages or details.
    pub fn new(app_id: &str, trigger: &str, created_at_ms: i64, app_user: AppUser) -> Self {
        Event {
            version: EVENT_VERSION,
            id: domain::id::new_id(),
            app_id: app_id.to_owned(),
            trigger: trigger.to_owned(),
            created_at_ms,
            app_user,
            messages: Vec::new(),
            postbacks: Vec::new(),
            merge: None,
            read: None,
            unread_count: None,
        }
    }
}

/// Trigger of a postback (an app user tapped a postback action).
pub const POSTBACK: &str = "postback";
/// Trigger of a conversation read.
pub const CONVERSATION_READ: &str = "conversation:read";
/// Trigger of a conversation's first message.
pub const CONVERSATION_START: &str = "conversation:start";
/// Trigger of an app user merge.
pub const MERGE_APP_USER: &str = "merge:appUser";

/// The trigger of a message by `role`.
pub fn message_trigger(role: &str) -> String {
    format!("message:{role}")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn sample() -> Event {
        let user = crate::model::AppUser::from_pb(Default::default(), false).unwrap();
        Event::new("5f1c0e2b9a8d7c6b5a4f3e2d", "message:appUser", 1, user)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The worker decodes whatever the bus hands it: any bytes are an event or an
        /// error, never a panic.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = serde_json::from_slice::<Event>(&bytes);
        }

        /// Mutations of a real event (a byte flipped, cut short, spliced) decode or fail
        /// cleanly too: these reach deeper into the decoder than random bytes do.
        #[test]
        fn decoding_mutated_events_never_panics(
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = serde_json::to_vec(&sample()).unwrap();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let _ = serde_json::from_slice::<Event>(&bytes);
            let _ = serde_json::from_slice::<Event>(&bytes[..cut.index(bytes.len())]);
        }

        /// Deep nesting in the free-form parts (`actions`, `metadata`) is refused by the
        /// JSON reader's recursion limit instead of overflowing the stack.
        #[test]
        fn deeply_nested_events_are_errors_not_overflows(depth in 100usize..5000) {
            let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let mut value = serde_json::to_value(sample()).unwrap();
            value["messages"] = json!([{"_id": "m", "authorId": "a", "role": "appUser",
                "text": "t", "received": 1.0, "actions": "PLACEHOLDER"}]);
            let text = value.to_string().replace("\"PLACEHOLDER\"", &nested);
            let _ = serde_json::from_str::<Event>(&text);
        }
    }

    #[test]
    fn an_event_survives_a_round_trip() {
        let event = sample();
        let bytes = serde_json::to_vec(&event).unwrap();
        assert_eq!(serde_json::from_slice::<Event>(&bytes).unwrap(), event);
    }
}
