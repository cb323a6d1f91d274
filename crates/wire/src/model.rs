//! The wire model: resources exactly as the Smooch v1 API shows them in responses and
//! webhook payloads (`_id`, camelCase, float-seconds `received`, ISO `signedUpAt`), and
//! their conversions from the services' protobuf types.

use proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use domain::{time, AppUserId, ConversationId, MessageId};

/// A message in a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The message id.
    #[serde(rename = "_id")]
    #[schema(value_type = String)]
    pub id: MessageId,
    /// The app user's `_id` for `appUser` messages; the key id for `appMaker` ones.
    pub author_id: String,
    /// `appUser` or `appMaker`.
    pub role: String,
    /// Display name of the author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Email of the author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Avatar of the author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// The text (for images, the media URL).
    pub text: String,
    /// Image URL of an image message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    /// Media type of an image message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Flat custom properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// Action buttons.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<Value>,
    /// Seconds since the epoch, millisecond precision.
    pub received: f64,
    /// `text`, or `image` for a message with a media URL.
    #[serde(rename = "type", default = "text_type")]
    pub kind: String,
    /// What sent the message: the platform or channel, and the device when known.
    #[serde(default)]
    pub source: Source,
}

fn text_type() -> String {
    "text".to_owned()
}

/// The platform or channel a message came from, and the sending device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Source {
    /// `api`, `web`, `ios`, `android`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The sending device's id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Default for Source {
    fn default() -> Self {
        Source {
            kind: "api".to_owned(),
            id: None,
        }
    }
}

/// A device of an app user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// The client's device id.
    pub id: String,
    /// `ios`, `android`, `web` or `other`.
    pub platform: String,
    /// The app's version on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// The push token of the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_notification_token: Option<String>,
    /// Flat device properties.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub info: Map<String, Value>,
    /// `active` when this user is the device's current user, else `inactive`.
    pub status: String,
    /// ISO 8601 time of the last init or update from the device.
    pub last_seen: String,
}

/// An app user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppUser {
    /// The app user id.
    #[serde(rename = "_id")]
    #[schema(value_type = String)]
    pub id: AppUserId,
    /// The API consumer's id for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// ISO 8601 with milliseconds and `Z`.
    pub signed_up_at: String,
    /// Flat custom properties.
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
    /// Whether the user has a conversation.
    pub conversation_started: bool,
    /// The user's devices; shown to app-scope callers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<Device>>,
}

impl AppUser {
    /// The default display name of this user's messages: given name and surname.
    pub fn display_name(&self) -> Option<String> {
        display_name(self.given_name.as_deref(), self.surname.as_deref())
    }
}

/// A conversation and (a page of) its messages, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    /// The conversation id.
    #[serde(rename = "_id")]
    #[schema(value_type = String)]
    pub id: ConversationId,
    /// Ids of the app makers who took part.
    pub app_makers: Vec<String>,
    /// Ids of the app users in it.
    #[schema(value_type = Vec<String>)]
    pub app_users: Vec<AppUserId>,
    /// Messages, oldest first.
    pub messages: Vec<Message>,
    /// appMaker messages the app user has not read.
    #[serde(default)]
    pub unread_count: i64,
    /// When the app user last read the conversation (seconds, like `received`); null for
    /// never.
    pub app_user_last_read: Option<f64>,
    /// When an app maker last read (posted to) the conversation; null for never.
    pub app_maker_last_read: Option<f64>,
}

/// JSON text from a protobuf field that does not parse as the shape it should have. The
/// services write these fields from values they checked, so this is a bug or a corrupt
/// stored value, never the client's fault: callers log it and answer an opaque 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is not valid JSON {expected}: {reason}")]
pub struct BadJson {
    /// The protobuf field, such as `message.metadata_json`.
    pub field: &'static str,
    /// `object` or `array`, with its article.
    pub expected: &'static str,
    /// What the parser said, or what the value was instead.
    pub reason: String,
}

/// Parses a JSON object carried as text in a protobuf field; empty text (or `null`) is
/// `None`, anything else that is not an object is an error naming `field`.
pub fn object_from_json(
    field: &'static str,
    text: &str,
) -> Result<Option<Map<String, Value>>, BadJson> {
    let bad = |reason: String| BadJson {
        field,
        expected: "an object",
        reason,
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(Value::Null) => Ok(None),
        Ok(other) => Err(bad(format!("found {}", json_kind(&other)))),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Parses a JSON array carried as text in a protobuf field; empty text (or `null`) is
/// empty, anything else that is not an array is an error naming `field`.
pub fn array_from_json(field: &'static str, text: &str) -> Result<Vec<Value>, BadJson> {
    let bad = |reason: String| BadJson {
        field,
        expected: "an array",
        reason,
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_str(text) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(Value::Null) => Ok(Vec::new()),
        Ok(other) => Err(bad(format!("found {}", json_kind(&other)))),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// The kind of a JSON value, for error messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The default display name of an app user's messages: given name and surname, trimmed,
/// whichever are not blank.
pub fn display_name(given_name: Option<&str>, surname: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = [given_name, surname]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

impl TryFrom<pb::Message> for Message {
    type Error = BadJson;

    fn try_from(m: pb::Message) -> Result<Self, BadJson> {
        let kind = if m.media_url.is_some() {
            "image"
        } else {
            "text"
        };
        Ok(Message {
            id: m.id.into(),
            author_id: m.author_id,
            role: m.role,
            name: m.name,
            email: m.email,
            avatar_url: m.avatar_url,
            text: m.text,
            media_url: m.media_url,
            media_type: m.media_type,
            metadata: object_from_json("message.metadata_json", &m.metadata_json)?,
            actions: array_from_json("message.actions_json", &m.actions_json)?,
            received: time::received(m.received_ms),
            kind: kind.to_owned(),
            source: Source {
                kind: if m.source_type.is_empty() {
                    "api".to_owned()
                } else {
                    m.source_type
                },
                id: m.source_id,
            },
        })
    }
}

impl TryFrom<pb::Device> for Device {
    type Error = BadJson;

    fn try_from(d: pb::Device) -> Result<Self, BadJson> {
        Ok(Device {
            id: d.id,
            platform: d.platform,
            app_version: d.app_version,
            push_notification_token: d.push_notification_token,
            info: object_from_json("device.info_json", &d.info_json)?.unwrap_or_default(),
            status: if d.active { "active" } else { "inactive" }.to_owned(),
            last_seen: time::iso(d.last_seen_ms),
        })
    }
}

impl AppUser {
    /// The wire form of a protobuf app user; `with_devices` for app-scope callers.
    pub fn from_pb(u: pb::AppUser, with_devices: bool) -> Result<Self, BadJson> {
        let devices = match with_devices {
            true => Some(
                u.devices
                    .into_iter()
                    .map(Device::try_from)
                    .collect::<Result<_, _>>()?,
            ),
            false => None,
        };
        Ok(AppUser {
            id: u.id.into(),
            user_id: u.user_id,
            given_name: u.given_name,
            surname: u.surname,
            email: u.email,
            signed_up_at: time::iso(u.signed_up_at_ms),
            properties: object_from_json("app_user.properties_json", &u.properties_json)?
                .unwrap_or_default(),
            conversation_started: u.conversation_started,
            devices,
        })
    }
}

impl TryFrom<pb::Conversation> for Conversation {
    type Error = BadJson;

    fn try_from(c: pb::Conversation) -> Result<Self, BadJson> {
        Ok(Conversation {
            id: c.id.into(),
            app_makers: c.app_makers,
            app_users: vec![c.app_user_id.into()],
            messages: c
                .messages
                .into_iter()
                .map(Message::try_from)
                .collect::<Result<_, _>>()?,
            unread_count: c.unread_count,
            app_user_last_read: (c.app_user_last_read_ms > 0)
                .then(|| time::received(c.app_user_last_read_ms)),
            app_maker_last_read: (c.app_maker_last_read_ms > 0)
                .then(|| time::received(c.app_maker_last_read_ms)),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn message_serializes_like_the_reference() {
        let m = Message::try_from(pb::Message {
            id: "55c8c1498590aa1900b9b9b1".into(),
            author_id: "c7f6e6d6c3a637261bd9656f".into(),
            role: "appUser".into(),
            name: Some("Steve".into()),
            text: "Hi".into(),
            received_ms: 1_444_348_338_704,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({
                "_id": "55c8c1498590aa1900b9b9b1",
                "authorId": "c7f6e6d6c3a637261bd9656f",
                "role": "appUser",
                "name": "Steve",
                "text": "Hi",
                "actions": [],
                "received": 1444348338.704,
                "type": "text",
                "source": {"type": "api"}
            })
        );
    }

    #[test]
    fn display_name_joins_given_name_and_surname() {
        let mut u = AppUser::from_pb(pb::AppUser::default(), false).unwrap();
        assert_eq!(u.display_name(), None);
        u.given_name = Some("Steve".into());
        assert_eq!(u.display_name().as_deref(), Some("Steve"));
        u.surname = Some("Brule".into());
        assert_eq!(u.display_name().as_deref(), Some("Steve Brule"));
    }

    #[test]
    fn stored_json_that_does_not_parse_is_an_error_naming_the_field() {
        let bad = Message::try_from(pb::Message {
            metadata_json: "{not json".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(bad.field, "message.metadata_json");
        let bad = Message::try_from(pb::Message {
            actions_json: r#"{"a": 1}"#.into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(bad.field, "message.actions_json");
        assert!(bad.to_string().contains("found an object"), "{bad}");
        let user = pb::AppUser {
            properties_json: "[1]".into(),
            ..Default::default()
        };
        assert!(AppUser::from_pb(user, false).is_err());
    }

    #[test]
    fn empty_or_null_json_is_none() {
        assert_eq!(object_from_json("f", "").unwrap(), None);
        assert_eq!(object_from_json("f", "null").unwrap(), None);
        assert_eq!(array_from_json("f", "").unwrap(), Vec::<Value>::new());
        assert_eq!(array_from_json("f", "[1]").unwrap(), vec![json!(1)]);
    }
}
