//! Validation rules shared by the gateway and the services, each returning an error
//! that names the field and says what is allowed.

use serde_json::{Map, Value};

use crate::Error;

/// Message author roles.
pub const ROLES: [&str; 2] = ["appUser", "appMaker"];

/// Device platforms.
pub const PLATFORMS: [&str; 4] = ["ios", "android", "web", "other"];

/// Webhook events a subscription may list.
pub const WEBHOOK_EVENTS: [&str; 3] = ["message", "message:appUser", "message:appMaker"];

/// The longest message `text`, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// The largest serialized `metadata`, `properties` or device `info`, in bytes.
pub const MAX_OBJECT_BYTES: usize = 16 * 1024;

/// The longest short string field (names, emails, userIds, URLs), in characters.
pub const MAX_FIELD_CHARS: usize = 2048;

/// Checks a message role.
pub fn role(role: &str) -> Result<(), Error> {
    if ROLES.contains(&role) {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "role must be one of {}; got {role:?}",
            ROLES.join(", ")
        )))
    }
}

/// Checks a device platform.
pub fn platform(platform: &str) -> Result<(), Error> {
    if PLATFORMS.contains(&platform) {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "device.platform must be one of {}; got {platform:?}",
            PLATFORMS.join(", ")
        )))
    }
}

/// Checks message text: present, not blank, not too long.
pub fn text(text: &str) -> Result<(), Error> {
    if text.trim().is_empty() {
        return Err(Error::bad_request("text is required and must not be empty"));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(Error::bad_request(format!(
            "text is {chars} characters long; the limit is {MAX_TEXT_CHARS}"
        )));
    }
    Ok(())
}

/// Checks a short string field's length.
pub fn short_field(field: &str, value: &str) -> Result<(), Error> {
    if value.chars().count() > MAX_FIELD_CHARS {
        return Err(Error::bad_request(format!(
            "{field} is longer than {MAX_FIELD_CHARS} characters"
        )));
    }
    Ok(())
}

/// Checks that `value` is a flat JSON object (values are strings, numbers, booleans or
/// null) within the size limit, and returns it.
pub fn flat_object(field: &str, value: &Value) -> Result<Map<String, Value>, Error> {
    let Value::Object(map) = value else {
        return Err(Error::bad_request(format!("{field} must be a JSON object")));
    };
    if let Some((key, _)) = map
        .iter()
        .find(|(_, v)| matches!(v, Value::Object(_) | Value::Array(_)))
    {
        return Err(Error::bad_request(format!(
            "{field} must be flat: {field}.{key} is an object or array; use strings, numbers or booleans"
        )));
    }
    let size = value.to_string().len();
    if size > MAX_OBJECT_BYTES {
        return Err(Error::bad_request(format!(
            "{field} is {size} bytes; the limit is {MAX_OBJECT_BYTES}"
        )));
    }
    Ok(map.clone())
}

/// Checks a webhook target: an absolute http(s) URL with a host.
pub fn webhook_target(target: &str) -> Result<(), Error> {
    short_field("target", target)?;
    let bad = || {
        Error::bad_request(format!(
            "target must be an absolute http or https URL; got {target:?}"
        ))
    };
    let uri: http::Uri = target.parse().map_err(|_| bad())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad()),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err(bad()),
    }
}

/// Checks webhook events and returns them without duplicates; none means `["message"]`.
pub fn webhook_events(events: &[String]) -> Result<Vec<String>, Error> {
    if events.is_empty() {
        return Ok(vec!["message".to_owned()]);
    }
    let mut out: Vec<String> = Vec::with_capacity(events.len());
    for event in events {
        if !WEBHOOK_EVENTS.contains(&event.as_str()) {
            return Err(Error::bad_request(format!(
                "unknown webhook event {event:?}; valid events are {} (case sensitive)",
                WEBHOOK_EVENTS.join(", ")
            )));
        }
        if !out.contains(event) {
            out.push(event.clone());
        }
    }
    Ok(out)
}

/// Whether a webhook subscribed to `events` wants a message by `role`.
pub fn webhook_wants_message(events: &[String], role: &str) -> bool {
    events.iter().any(|e| match e.as_str() {
        "message" => true,
        "message:appUser" => role == "appUser",
        "message:appMaker" => role == "appMaker",
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn flat_objects_reject_nesting_and_non_objects() {
        assert!(flat_object("properties", &json!({"a": 1, "b": "x", "c": true})).is_ok());
        let err = flat_object("properties", &json!({"a": {"b": 1}})).unwrap_err();
        assert!(err.description.contains("properties.a"), "{err}");
        assert!(flat_object("metadata", &json!([1])).is_err());
        let big = json!({"k": "x".repeat(MAX_OBJECT_BYTES)});
        assert!(flat_object("metadata", &big).is_err());
    }

    #[test]
    fn webhook_targets_must_be_http_urls() {
        assert!(webhook_target("http://example.com/callback").is_ok());
        assert!(webhook_target("https://example.com").is_ok());
        assert!(webhook_target("ftp://example.com").is_err());
        assert!(webhook_target("example.com/callback").is_err());
        assert!(webhook_target("not a url").is_err());
    }

    #[test]
    fn webhook_events_default_and_reject_unknown() {
        assert_eq!(webhook_events(&[]).unwrap(), vec!["message"]);
        let twice = vec!["message:appUser".to_owned(), "message:appUser".to_owned()];
        assert_eq!(webhook_events(&twice).unwrap(), vec!["message:appUser"]);
        let err = webhook_events(&["Message".to_owned()]).unwrap_err();
        assert!(err.description.contains("case sensitive"));
    }

    #[test]
    fn webhook_event_matching_by_role() {
        let all = vec!["message".to_owned()];
        let users = vec!["message:appUser".to_owned()];
        assert!(webhook_wants_message(&all, "appMaker"));
        assert!(webhook_wants_message(&users, "appUser"));
        assert!(!webhook_wants_message(&users, "appMaker"));
    }

    #[test]
    fn text_limits() {
        assert!(text("hi").is_ok());
        assert!(text("  ").is_err());
        assert!(text(&"x".repeat(MAX_TEXT_CHARS + 1)).is_err());
    }
}
