//! The delivery job (one event for one webhook, as it travels through the delivery and
//! retry queues) and the payload it POSTs.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use wire::event::{Event, Merge, Postback, Read};
use wire::model::{AppUser, Message};

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
    /// When (ms since the epoch) the job was first held back because its target's circuit
    /// was open, with no attempt made since; absent otherwise. A held-back job uses up no
    /// attempt until it has waited longer than the retry schedule and a cool-down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_since_ms: Option<i64>,
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
            skipped_since_ms: None,
            event,
        }
    }

    /// Whether a webhook subscribed to `events` wants this job's event.
    pub fn wanted_by(&self, events: &[String]) -> bool {
        wants(events, &self.event.trigger)
    }
}

/// Whether a webhook subscribed to `events` wants an event with routing key `trigger`:
/// `message` covers every `message:<role>` trigger; any other name matches only itself.
pub fn wants(events: &[String], trigger: &str) -> bool {
    match trigger.strip_prefix("message:") {
        Some(role) => domain::validate::webhook_wants_message(events, role),
        None => events.iter().any(|e| e == trigger || e == "*"),
    }
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
/// `appUserId`), then additive fields, then the event's trigger-specific details
/// (`merge`, `postbacks`, `read`) when it has them.
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
    // In the order of their names, as the payload always listed them.
    #[serde(skip_serializing_if = "Option::is_none")]
    merge: Option<&'a Merge>,
    #[serde(skip_serializing_if = "<[Postback]>::is_empty")]
    postbacks: &'a [Postback],
    #[serde(skip_serializing_if = "Option::is_none")]
    read: Option<&'a Read>,
}

#[derive(Debug, Serialize)]
struct AppRef<'a> {
    #[serde(rename = "_id")]
    id: &'a str,
}

/// Serializes the webhook body of `event`.
pub fn payload(event: &Event) -> serde_json::Result<Vec<u8>> {
    // Every field named: a field added to events must be placed in the payload, or left
    // out of it, here.
    let Event {
        version,
        id: _,
        app_id,
        trigger,
        created_at_ms: _,
        app_user,
        messages,
        postbacks,
        merge,
        read,
        // Internal: the push worker's badge.
        unread_count: _,
    } = event;
    serde_json::to_vec(&Payload {
        event: trigger,
        messages,
        app_user_id: app_user.id.as_str(),
        trigger,
        app: AppRef { id: app_id },
        app_user,
        version: *version,
        merge: merge.as_ref(),
        postbacks,
        read: read.as_ref(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event of app user `u1` of app `a1`, with no messages, its fields replaced or
    /// added to by `fields`.
    fn event_with(fields: serde_json::Value) -> Event {
        let mut event = serde_json::json!({
            "version": 1,
            "id": "e1",
            "appId": "a1",
            "trigger": "message:appUser",
            "createdAtMs": 1,
            "appUser": {
                "_id": "u1",
                "signedUpAt": "2015-10-06T20:53:01.588Z",
                "properties": {},
                "conversationStarted": true
            },
            "messages": []
        });
        if let (Some(event), serde_json::Value::Object(fields)) = (event.as_object_mut(), fields) {
            event.extend(fields);
        }
        serde_json::from_value(event).unwrap()
    }

    #[test]
    fn message_covers_both_roles_and_other_events_match_exactly() {
        let events = |e: &[&str]| e.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(wants(&events(&["message"]), "message:appMaker"));
        assert!(wants(&events(&["message:appUser"]), "message:appUser"));
        assert!(!wants(&events(&["message:appUser"]), "message:appMaker"));
        assert!(wants(&events(&["*"]), "message:appMaker"));
        assert!(wants(&events(&["*"]), "merge:appUser"));
        assert!(!wants(&events(&["message"]), "postback"));
        assert!(wants(&events(&["postback"]), "postback"));
        assert!(!wants(&events(&["message"]), "postback"));
    }

    #[test]
    fn the_skip_clock_is_left_out_until_set_and_read_back_when_absent() {
        let mut job = Job::new(event_with(serde_json::json!({})), "w1");
        let fresh = serde_json::to_value(&job).unwrap();
        assert!(fresh.get("skippedSinceMs").is_none(), "{fresh}");
        // Jobs written before the field existed read back with no skip clock.
        assert_eq!(serde_json::from_value::<Job>(fresh).unwrap(), job);
        job.skipped_since_ms = Some(42);
        let held = serde_json::to_value(&job).unwrap();
        assert_eq!(held["skippedSinceMs"], 42);
        assert_eq!(serde_json::from_value::<Job>(held).unwrap(), job);
    }

    #[test]
    fn the_payload_is_the_event_less_its_envelope() {
        let message = serde_json::json!({
            "_id": "m1", "role": "appUser", "text": "hi \"there\"", "type": "text",
            "authorId": "u1", "received": 1.5, "actions": [], "source": {"type": "api"}
        });
        let mut event = event_with(serde_json::json!({
            "appUser": {
                "_id": "u1",
                "signedUpAt": "2015-10-06T20:53:01.588Z",
                "properties": {"plan": "gold"},
                "conversationStarted": true
            },
            "messages": [message.clone()],
            "unreadCount": 3
        }));
        // Byte for byte what the payload was when it went through a JSON value of the event:
        // the reference's fields first, no `id`, `appId`, `createdAtMs` or `unreadCount`.
        assert_eq!(
            String::from_utf8(payload(&event).unwrap()).unwrap(),
            concat!(
                r#"{"event":"message:appUser","messages":[{"_id":"m1","authorId":"u1","#,
                r#""role":"appUser","text":"hi \"there\"","actions":[],"received":1.5,"#,
                r#""type":"text","source":{"type":"api"}}],"appUserId":"u1","#,
                r#""trigger":"message:appUser","app":{"_id":"a1"},"appUser":{"_id":"u1","#,
                r#""signedUpAt":"2015-10-06T20:53:01.588Z","properties":{"plan":"gold"},"#,
                r#""conversationStarted":true},"version":1}"#
            )
        );
        // Every detail at once, which no real event has, to pin their order.
        event = event_with(serde_json::json!({
            "id": "e2",
            "trigger": "postback",
            "createdAtMs": 2,
            "postbacks": [{"message": message, "action": {"_id": "a1", "type": "postback", "text": "Yes", "payload": "YES"}}],
            "merge": {"survivingAppUserId": "u1", "discardedAppUserId": "u2"},
            "read": {"role": "appMaker", "lastRead": 1.25}
        }));
        // The details' own fields keep their declared order, as the messages always did (a
        // JSON value sorted them): the same JSON as before, the details in the same places.
        let body = String::from_utf8(payload(&event).unwrap()).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({
                "event": "postback", "messages": [], "appUserId": "u1", "trigger": "postback",
                "app": {"_id": "a1"},
                "appUser": {
                    "_id": "u1", "signedUpAt": "2015-10-06T20:53:01.588Z", "properties": {},
                    "conversationStarted": true
                },
                "version": 1,
                "merge": {"discardedAppUserId": "u2", "survivingAppUserId": "u1"},
                "postbacks": [{
                    "action": {"_id": "a1", "payload": "YES", "text": "Yes", "type": "postback"},
                    "message": {
                        "_id": "m1", "actions": [], "authorId": "u1", "received": 1.5,
                        "role": "appUser", "source": {"type": "api"}, "text": "hi \"there\"",
                        "type": "text"
                    }
                }],
                "read": {"lastRead": 1.25, "role": "appMaker"}
            })
        );
        let at = |key: &str| body.find(&format!("\"{key}\":")).unwrap_or(usize::MAX);
        assert!(
            at("version") < at("merge")
                && at("merge") < at("postbacks")
                && at("postbacks") < at("read"),
            "{body}"
        );
    }

    #[test]
    fn delivery_ids_are_stable_per_event_and_webhook() {
        let a = delivery_id("e1", "w1");
        assert_eq!(a, delivery_id("e1", "w1"));
        assert_ne!(a, delivery_id("e1", "w2"));
        assert!(domain::id::is_id(&a), "{a}");
    }
}
