//! What a push says, and to which devices: the rules, as plain functions.

use serde::{Deserialize, Serialize};
use wire::model::{Device, Message};

/// The body of a notification for a message without text.
pub(crate) const IMAGE_BODY: &str = "sent an image";

/// One notification, as every protocol renders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Notification {
    pub(crate) title: String,
    pub(crate) body: String,
    /// The app badge: the conversation's unread count.
    pub(crate) badge: u32,
    pub(crate) app_id: String,
    pub(crate) app_user_id: String,
    pub(crate) message_id: String,
}

/// The notification of an app-maker `message` to `app_user_id`: the author's name (else
/// the app's) as title, the text (or "sent an image") as body. `None` for a message that
/// has nothing to show.
pub(crate) fn of_message(
    app_id: &str,
    app_user_id: &str,
    app_name: &str,
    unread_count: Option<i64>,
    message: &Message,
) -> Option<Notification> {
    let text = message.text.trim();
    // An image message's text is its media URL (as the hosted API stored it): no caption.
    let media = message.media_url.as_deref().map(str::trim);
    let body = if media.is_some() && (text.is_empty() || Some(text) == media) {
        IMAGE_BODY.to_owned()
    } else if !text.is_empty() {
        text.to_owned()
    } else {
        return None;
    };
    let title = message
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(app_name)
        .to_owned();
    Some(Notification {
        title,
        body,
        badge: badge(unread_count),
        app_id: app_id.to_owned(),
        app_user_id: app_user_id.to_owned(),
        message_id: message.id.to_string(),
    })
}

/// The badge: the conversation's unread count as the event carries it (at least 1: this
/// message is unread), or 1 for events written before the count was carried.
pub(crate) fn badge(unread_count: Option<i64>) -> u32 {
    unread_count
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1)
        .max(1)
}

/// Whether a message gets a push: app-maker messages (whispers are too).
pub(crate) fn wanted(message: &Message) -> bool {
    message.role == "appMaker"
}

/// Which provider a device's token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Provider {
    Apns,
    Fcm,
}

impl Provider {
    /// The label in metrics and logs.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Provider::Apns => "apns",
            Provider::Fcm => "fcm",
        }
    }
}

/// A device to notify: its id, token, provider and platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Target {
    pub(crate) device_id: String,
    pub(crate) token: String,
    pub(crate) provider: Provider,
    /// The device's platform (`ios`, `android`), for the delivery log; empty in retries
    /// queued before it was carried.
    #[serde(default)]
    pub(crate) platform: String,
}

impl Target {
    /// Whether `other` is the same device, token and provider (the platform aside).
    pub(crate) fn same_as(&self, other: &Target) -> bool {
        self.device_id == other.device_id
            && self.token == other.token
            && self.provider == other.provider
    }
}

/// The devices of a user that get pushes: those with a token whose active user is this
/// user (only the most recent userId on a device receives them), on a platform with a
/// configured provider (iOS: APNs, else FCM when only FCM is set; Android: FCM).
pub(crate) fn targets(devices: &[Device], has_apn: bool, has_fcm: bool) -> Vec<Target> {
    devices
        .iter()
        .filter(|d| d.status == "active")
        .filter_map(|d| {
            let token = d
                .push_notification_token
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())?;
            let provider = match d.platform.as_str() {
                "ios" if has_apn => Provider::Apns,
                "ios" | "android" if has_fcm => Provider::Fcm,
                _ => return None,
            };
            Some(Target {
                device_id: d.id.clone(),
                token: token.to_owned(),
                provider,
                platform: d.platform.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn message(text: &str, media: Option<&str>, name: Option<&str>) -> Message {
        serde_json::from_value(serde_json::json!({
            "_id": "m1", "authorId": "a", "role": "appMaker", "text": text,
            "mediaUrl": media, "name": name, "received": 1.0, "type": "text",
            "source": {"type": "api"}
        }))
        .unwrap()
    }

    fn device(id: &str, platform: &str, token: Option<&str>, active: bool) -> Device {
        serde_json::from_value(serde_json::json!({
            "id": id, "platform": platform, "pushNotificationToken": token, "info": {},
            "status": if active { "active" } else { "inactive" }, "lastSeen": "2026-01-01T00:00:00.000Z"
        }))
        .unwrap()
    }

    #[test]
    fn text_messages_show_author_and_text() {
        let n = of_message(
            "app",
            "u",
            "Shop",
            None,
            &message("Hi there", None, Some("Ann")),
        )
        .unwrap();
        assert_eq!(
            (n.title.as_str(), n.body.as_str(), n.badge),
            ("Ann", "Hi there", 1)
        );
    }

    #[test]
    fn images_say_sent_an_image_and_nameless_authors_use_the_app_name() {
        let n = of_message(
            "app",
            "u",
            "Shop",
            None,
            &message("", Some("http://x/a.png"), None),
        )
        .unwrap();
        assert_eq!((n.title.as_str(), n.body.as_str()), ("Shop", IMAGE_BODY));
        let url = "http://x/a.png";
        let n = of_message("app", "u", "Shop", None, &message(url, Some(url), None)).unwrap();
        assert_eq!(n.body, IMAGE_BODY);
        assert!(of_message("app", "u", "Shop", None, &message(" ", None, None)).is_none());
    }

    #[test]
    fn only_active_devices_with_a_token_and_a_provider_are_targets() {
        let devices = [
            device("ios1", "ios", Some("t1"), true),
            device("and1", "android", Some("t2"), true),
            device("old", "ios", Some("t3"), false),
            device("none", "ios", None, true),
            device("web", "web", Some("t4"), true),
        ];
        let ids = |t: Vec<Target>| {
            t.into_iter()
                .map(|t| (t.device_id, t.provider))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(targets(&devices, true, true)),
            [
                ("ios1".to_owned(), Provider::Apns),
                ("and1".to_owned(), Provider::Fcm)
            ]
        );
        assert_eq!(
            ids(targets(&devices, false, true)),
            [
                ("ios1".to_owned(), Provider::Fcm),
                ("and1".to_owned(), Provider::Fcm)
            ]
        );
        assert_eq!(
            ids(targets(&devices, true, false)),
            [("ios1".to_owned(), Provider::Apns)]
        );
    }
}
