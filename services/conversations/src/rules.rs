//! The rules of a message write, apart from gRPC and SQL: what makes a new message
//! valid, what it defaults to, and what its outbox event carries.

use domain::id::{AppId, AppUserId};
use domain::validate;
use proto::v1 as pb;
use serde_json::Value;
use wire::event::{self, message_trigger, Event};
use wire::model::{AppUser, BadJson, Message};

use crate::storage::{MessageRow, StoredResponse, WhisperRow};

/// Checks the app id every request names.
/// The request's app id, typed for storage.
pub(crate) fn app_scope(app_id: &str) -> Result<AppId, domain::Error> {
    if app_id.trim().is_empty() {
        return Err(domain::Error::bad_request("app_id is required"));
    }
    Ok(AppId::from(app_id))
}

/// Checks the ids every app user request names; they come back typed for storage, so one
/// cannot be passed as the other.
pub(crate) fn scope(app_id: &str, app_user_id: &str) -> Result<(AppId, AppUserId), domain::Error> {
    let app_id = app_scope(app_id)?;
    if app_user_id.trim().is_empty() {
        return Err(domain::Error::bad_request("app_user_id is required"));
    }
    Ok((app_id, AppUserId::from(app_user_id)))
}

/// The app user as the event shows it: the one the caller sent (or a bare one with the
/// right id), who now has a conversation. The caller read it from the users service, so
/// properties that do not parse are a stored value gone bad, not a client error.
pub(crate) fn event_app_user(
    app_id: &str,
    app_user_id: &str,
    sent: Option<pb::AppUser>,
) -> Result<AppUser, BadJson> {
    let mut user = sent.unwrap_or_default();
    if user.id.is_empty() {
        app_user_id.clone_into(&mut user.id);
        app_id.clone_into(&mut user.app_id);
    }
    user.conversation_started = true;
    AppUser::from_pb(user, false)
}

/// Validates `m` and makes the message to store, received at `now_ms`.
///
/// An `appUser` message without a name takes the app user's given name and surname; its
/// author defaults to the app user.
pub(crate) fn new_message(
    app_user_id: &str,
    app_user: &AppUser,
    m: pb::NewMessage,
    now_ms: i64,
) -> Result<MessageRow, domain::Error> {
    validate::role(&m.role)?;
    // An image message may come without text (since late 2015); then its text is the
    // media URL, as an uploaded image's is.
    let text = match (&m.media_url, m.text.trim().is_empty()) {
        (Some(url), true) => url.clone(),
        (None, true) => {
            return Err(domain::Error::bad_request(
                "text is required (or mediaUrl for an image)",
            ))
        }
        _ => m.text,
    };
    validate::text(&text)?;
    let source_type = if m.source_type.is_empty() {
        "api".to_owned()
    } else {
        m.source_type
    };
    validate::short_field("source.type", &source_type)?;
    if let Some(id) = &m.source_id {
        validate::short_field("source.id", id)?;
    }
    for (field, value) in [
        ("name", &m.name),
        ("email", &m.email),
        ("avatarUrl", &m.avatar_url),
        ("mediaUrl", &m.media_url),
        ("mediaType", &m.media_type),
    ] {
        if let Some(value) = value {
            validate::short_field(field, value)?;
        }
    }
    validate::short_field("authorId", &m.author_id)?;
    let metadata_json = metadata(&m.metadata_json)?;
    let is_app_user = m.role == "appUser";
    let actions_json = actions(&m.actions_json)?;
    if is_app_user && actions_json != "[]" {
        return Err(domain::Error::bad_request(
            "actions are only allowed on appMaker messages",
        ));
    }
    let author_id = if m.author_id.is_empty() && is_app_user {
        app_user_id.to_owned()
    } else {
        m.author_id
    };
    let name = match m.name {
        None if is_app_user => app_user.display_name(),
        name => name,
    };
    Ok(MessageRow {
        id: domain::id::new_id(),
        author_id,
        role: m.role,
        name,
        email: m.email,
        avatar_url: m.avatar_url,
        text,
        media_url: m.media_url,
        media_type: m.media_type,
        metadata_json,
        actions_json,
        received_ms: now_ms,
        source_type,
        source_id: m.source_id,
    })
}

/// Checks message actions sent as JSON text (empty means none) and returns them as JSON
/// text, each with a new `_id`.
pub(crate) fn actions(json: &str) -> Result<String, domain::Error> {
    if json.trim().is_empty() {
        return Ok("[]".to_owned());
    }
    let value: Value = serde_json::from_str(json)
        .map_err(|_| domain::Error::bad_request("actions must be a JSON array"))?;
    Ok(Value::Array(validate::actions(&value)?).to_string())
}

/// Checks message metadata (empty means none) and returns it as normalized JSON text.
fn metadata(json: &str) -> Result<String, domain::Error> {
    if json.trim().is_empty() {
        return Ok(String::new());
    }
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|_| domain::Error::bad_request("metadata must be a flat JSON object"))?;
    let map = validate::metadata(&value)?;
    Ok(serde_json::Value::Object(map).to_string())
}

/// The event of a new message (in its wire form, parsed once for both events), for the
/// outbox.
pub(crate) fn message_event(app_id: &str, app_user: AppUser, message: Message) -> Event {
    let mut event = Event::new(
        app_id,
        &message_trigger(&message.role),
        domain::time::received_to_ms(message.received),
        app_user,
    );
    event.messages = vec![message];
    event
}

/// The `conversation:read` event of the app user reading at `now_ms`.
pub(crate) fn read_event(app_id: &str, app_user: AppUser, now_ms: i64) -> Event {
    let mut event = Event::new(app_id, event::CONVERSATION_READ, now_ms, app_user);
    event.read = Some(event::Read {
        role: "appUser".to_owned(),
        last_read: domain::time::received(now_ms),
    });
    event
}

/// The `postback` event of the app user tapping `action` of `message`.
pub(crate) fn postback_event(
    app_id: &str,
    app_user: AppUser,
    message: pb::Message,
    action: Value,
    now_ms: i64,
) -> Result<Event, BadJson> {
    let mut event = Event::new(app_id, event::POSTBACK, now_ms, app_user);
    event.postbacks = vec![event::Postback {
        message: Message::try_from(message)?,
        action,
    }];
    Ok(event)
}

/// The `merge:appUser` event of `from` merged into `into`.
pub(crate) fn merge_event(app_id: &str, into: AppUser, from: &str, now_ms: i64) -> Event {
    let surviving = into.id.clone();
    let mut event = Event::new(app_id, event::MERGE_APP_USER, now_ms, into);
    event.merge = Some(event::Merge {
        surviving_app_user_id: surviving,
        discarded_app_user_id: from.into(),
    });
    event
}

/// The action `action_id` of a stored message, if it has it.
pub(crate) fn find_action(message: &MessageRow, action_id: &str) -> Result<Option<Value>, BadJson> {
    Ok(
        wire::model::array_from_json("message.actions_json", &message.actions_json)?
            .into_iter()
            .find(|a| a.get("_id").and_then(Value::as_str) == Some(action_id)),
    )
}

/// Checks that a tapped action can be posted back: postback and reply buttons only.
pub(crate) fn postback_action(action: &Value) -> Result<(), domain::Error> {
    match action.get("type").and_then(Value::as_str) {
        Some("postback" | "reply") => Ok(()),
        other => Err(domain::Error::bad_request(format!(
            "actionId names a {} action; only postback and reply actions can be posted back",
            other.unwrap_or("unknown")
        ))),
    }
}

/// Checks a whisper's fields and normalizes them (actions get `_id`s).
pub(crate) fn whisper(mut w: WhisperRow) -> Result<WhisperRow, domain::Error> {
    event_name(&w.event).map_err(|_| {
        domain::Error::bad_request("event is required: the app user event name that fires it")
    })?;
    validate::short_field("event", &w.event)?;
    validate::text(&w.text)?;
    for (field, value) in [
        ("name", &w.name),
        ("avatarUrl", &w.avatar_url),
        ("appVersion", &w.app_version),
    ] {
        if let Some(value) = value {
            validate::short_field(field, value)?;
        }
    }
    if let Some(platform) = &w.platform {
        validate::platform(platform).map_err(|_| {
            domain::Error::bad_request(format!(
                "platform must be one of {}; got {platform:?}",
                validate::PLATFORMS.join(", ")
            ))
        })?;
    }
    w.actions = Value::Array(validate::actions(&w.actions)?);
    Ok(w)
}

/// Whether a whisper targets the app user's current device (the most recently seen one):
/// a whisper without targeting fires for everyone, one with `platform` or `appVersion`
/// only when the device has that value.
pub(crate) fn whisper_targets(w: &WhisperRow, devices: &[pb::Device]) -> bool {
    if w.platform.is_none() && w.app_version.is_none() {
        return true;
    }
    let current = devices.iter().max_by_key(|d| d.last_seen_ms);
    current.is_some_and(|d| {
        w.platform.as_ref().is_none_or(|p| *p == d.platform)
            && w.app_version
                .as_ref()
                .is_none_or(|v| Some(v) == d.app_version.as_ref())
    })
}

/// The appMaker message a whisper posts: its text, sender and actions (with fresh `_id`s,
/// since every stored action has its own).
pub(crate) fn whisper_message(w: &WhisperRow, now_ms: i64) -> Result<MessageRow, domain::Error> {
    Ok(MessageRow {
        id: domain::id::new_id(),
        author_id: w.id.clone(),
        role: "appMaker".to_owned(),
        name: w.name.clone(),
        email: None,
        avatar_url: w.avatar_url.clone(),
        text: w.text.clone(),
        media_url: None,
        media_type: None,
        metadata_json: String::new(),
        actions_json: Value::Array(validate::actions(&w.actions)?).to_string(),
        received_ms: now_ms,
        source_type: "api".to_owned(),
        source_id: None,
    })
}

/// Checks an event name.
pub(crate) fn event_name(name: &str) -> Result<(), domain::Error> {
    if name.trim().is_empty() {
        return Err(domain::Error::bad_request(
            "name is required and must not be empty",
        ));
    }
    validate::short_field("name", name)
}

/// The longest `Idempotency-Key` accepted.
pub(crate) const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Checks an idempotency key: 1 to 255 visible ASCII characters.
pub(crate) fn idempotency_key(key: &str) -> Result<(), domain::Error> {
    let visible = key.bytes().all(|b| b.is_ascii_graphic());
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || !visible {
        return Err(domain::Error::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters, \
             such as a UUID"
        )));
    }
    Ok(())
}

/// The answer to a retried keyed request: the stored response when the request is the same
/// as the first one, a conflict when the key was used for another request.
pub(crate) fn replay(
    stored: StoredResponse,
    key: &str,
    request_hash: &str,
) -> crate::Result<pb::PostMessageResponse> {
    if stored.request_hash != request_hash {
        return Err(domain::Error::new(
            domain::ErrorCode::Conflict,
            format!(
                "Idempotency-Key {key:?} was already used for a different request in the last \
                 24 hours; send a new key with a new message"
            ),
        )
        .into());
    }
    let mut response: pb::PostMessageResponse = prost::Message::decode(stored.response.as_slice())
        .map_err(|e| {
            tracing::error!(error = %e, "stored idempotent response does not decode");
            domain::Error::internal()
        })?;
    response.replayed = true;
    Ok(response)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn user() -> AppUser {
        event_app_user(
            "app",
            "u1",
            Some(pb::AppUser {
                id: "u1".into(),
                given_name: Some("Steve".into()),
                surname: Some("Brule".into()),
                ..Default::default()
            }),
        )
        .unwrap()
    }

    fn msg(role: &str) -> pb::NewMessage {
        pb::NewMessage {
            role: role.into(),
            text: "hi".into(),
            ..Default::default()
        }
    }

    #[test]
    fn app_user_messages_default_their_name_and_author() {
        let row = new_message("u1", &user(), msg("appUser"), 1).unwrap();
        assert_eq!(row.name.as_deref(), Some("Steve Brule"));
        assert_eq!(row.author_id, "u1");
        assert_eq!(row.actions_json, "[]");
        assert_eq!(row.metadata_json, "");
    }

    #[test]
    fn app_maker_messages_have_no_default_name() {
        let mut m = msg("appMaker");
        m.author_id = "key1".into();
        let row = new_message("u1", &user(), m, 1).unwrap();
        assert_eq!(row.name, None);
        assert_eq!(row.author_id, "key1");
    }

    #[test]
    fn metadata_must_be_a_flat_object() {
        let mut m = msg("appUser");
        m.metadata_json = r#"{"a": {"b": 1}}"#.into();
        let err = new_message("u1", &user(), m, 1).unwrap_err();
        assert!(err.description.contains("metadata.a"), "{err}");
        let mut m = msg("appUser");
        m.metadata_json = "not json".into();
        assert!(new_message("u1", &user(), m, 1).is_err());
        let mut m = msg("appUser");
        m.metadata_json = r#"{"lang": "en-ca"}"#.into();
        let row = new_message("u1", &user(), m, 1).unwrap();
        assert_eq!(row.metadata_json, r#"{"lang":"en-ca"}"#);
    }

    #[test]
    fn actions_only_on_app_maker_messages_and_get_ids() {
        let mut m = msg("appMaker");
        m.actions_json = r#"[{"type": "postback", "text": "Yes", "payload": "YES"}]"#.into();
        let row = new_message("u1", &user(), m.clone(), 1).unwrap();
        let stored = wire::model::array_from_json("actions", &row.actions_json).unwrap();
        let id = stored[0]["_id"].as_str().unwrap();
        assert!(domain::id::is_id(id));
        assert_eq!(find_action(&row, id).unwrap(), Some(stored[0].clone()));
        assert!(postback_action(&stored[0]).is_ok());
        m.role = "appUser".into();
        let err = new_message("u1", &user(), m, 1).unwrap_err();
        assert!(err.description.contains("appMaker"), "{err}");
        let mut bad = msg("appMaker");
        bad.actions_json = r#"[{"type": "link", "text": "x"}]"#.into();
        let err = new_message("u1", &user(), bad, 1).unwrap_err();
        assert!(err.description.contains("actions[0].uri"), "{err}");
    }

    fn targeted(platform: Option<&str>, app_version: Option<&str>) -> WhisperRow {
        WhisperRow {
            id: "w".into(),
            event: "e".into(),
            text: "hi".into(),
            actions: Value::Array(Vec::new()),
            name: None,
            avatar_url: None,
            platform: platform.map(Into::into),
            app_version: app_version.map(Into::into),
            created_at_ms: 0,
        }
    }

    #[test]
    fn whisper_targeting_uses_the_most_recent_device() {
        let device = |platform: &str, version: &str, seen: i64| pb::Device {
            platform: platform.into(),
            app_version: Some(version.into()),
            last_seen_ms: seen,
            ..Default::default()
        };
        let devices = vec![device("android", "1.0", 1), device("ios", "2.0", 2)];
        assert!(whisper_targets(&targeted(None, None), &[]));
        assert!(whisper_targets(&targeted(Some("ios"), None), &devices));
        assert!(!whisper_targets(&targeted(Some("android"), None), &devices));
        assert!(whisper_targets(
            &targeted(Some("ios"), Some("2.0")),
            &devices
        ));
        assert!(!whisper_targets(&targeted(None, Some("1.0")), &devices));
        assert!(!whisper_targets(&targeted(Some("ios"), None), &[]));
    }

    #[test]
    fn whispers_are_validated() {
        assert!(whisper(targeted(None, None)).is_ok());
        let mut w = targeted(Some("palm"), None);
        assert!(whisper(w.clone())
            .unwrap_err()
            .description
            .contains("platform"));
        w.platform = None;
        w.event = " ".into();
        assert!(whisper(w).unwrap_err().description.contains("event"));
    }

    #[test]
    fn event_app_user_has_started_a_conversation() {
        let u = event_app_user("app", "u9", None).unwrap();
        assert_eq!(u.id, "u9");
        assert!(u.conversation_started);
    }
}
