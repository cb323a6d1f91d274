//! The versioned event that message writes put in the outbox and the bus carries to the
//! webhook worker. Routing key = `trigger`.

use serde::{Deserialize, Serialize};

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
    /// The message(s) of a message event.
    #[serde(default)]
    pub messages: Vec<Message>,
}

/// The trigger of a message by `role`.
pub fn message_trigger(role: &str) -> String {
    format!("message:{role}")
}
