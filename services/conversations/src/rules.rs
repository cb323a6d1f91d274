//! The rules of a message write, apart from gRPC and SQL: what makes a new message
//! valid, what it defaults to, and what its outbox event carries.

use domain::event::{message_trigger, Event, EVENT_VERSION};
use domain::model::{AppUser, Message};
use domain::validate;
use proto::v1 as pb;

use crate::storage::MessageRow;

/// Checks the ids every request names.
pub(crate) fn scope(app_id: &str, app_user_id: &str) -> Result<(), domain::Error> {
    if app_id.trim().is_empty() {
        return Err(domain::Error::bad_request("app_id is required"));
    }
    if app_user_id.trim().is_empty() {
        return Err(domain::Error::bad_request("app_user_id is required"));
    }
    Ok(())
}

/// The app user as the event shows it: the one the caller sent (or a bare one with the
/// right id), who now has a conversation.
pub(crate) fn event_app_user(
    app_id: &str,
    app_user_id: &str,
    sent: Option<pb::AppUser>,
) -> AppUser {
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
    validate::text(&m.text)?;
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
        text: m.text,
        media_url: m.media_url,
        media_type: m.media_type,
        metadata_json,
        actions_json: "[]".to_owned(),
        received_ms: now_ms,
    })
}

/// Checks message metadata (empty means none) and returns it as normalized JSON text.
fn metadata(json: &str) -> Result<String, domain::Error> {
    if json.trim().is_empty() {
        return Ok(String::new());
    }
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|_| domain::Error::bad_request("metadata must be a flat JSON object"))?;
    let map = validate::flat_object("metadata", &value)?;
    Ok(serde_json::Value::Object(map).to_string())
}

/// The event of a new message, for the outbox.
pub(crate) fn message_event(app_id: &str, app_user: AppUser, message: pb::Message) -> Event {
    Event {
        version: EVENT_VERSION,
        id: domain::id::new_id(),
        app_id: app_id.to_owned(),
        trigger: message_trigger(&message.role),
        created_at_ms: message.received_ms,
        app_user,
        messages: vec![Message::from(message)],
    }
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
    fn event_app_user_has_started_a_conversation() {
        let u = event_app_user("app", "u9", None);
        assert_eq!(u.id, "u9");
        assert!(u.conversation_started);
    }
}
