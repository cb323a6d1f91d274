//! Validation rules shared by the gateway and the services, each returning an error
//! that names the field and says what is allowed.

use serde_json::{Map, Value};

use crate::Error;

/// Message author roles.
pub const ROLES: [&str; 2] = ["appUser", "appMaker"];

/// Device platforms.
pub const PLATFORMS: [&str; 4] = ["ios", "android", "web", "other"];

/// Webhook events (later called triggers) a subscription may list; `*` is every one.
pub const WEBHOOK_EVENTS: [&str; 8] = [
    "*",
    "message",
    "message:appUser",
    "message:appMaker",
    "postback",
    "conversation:read",
    "conversation:start",
    "merge:appUser",
];

/// Action types an app maker message may carry.
pub const ACTION_TYPES: [&str; 4] = ["link", "postback", "reply", "buy"];

/// The most actions one message may carry.
pub const MAX_ACTIONS: usize = 20;

/// The largest serialized message `metadata`, in bytes.
pub const MAX_METADATA_BYTES: usize = 4 * 1024;

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
    match http_host(target) {
        Some(_) => Ok(()),
        None => Err(bad()),
    }
}

/// The longest URI accepted, as the HTTP client that delivers webhooks allows.
const MAX_URI_LEN: usize = u16::MAX as usize - 1;

/// The host of `target` when it is an absolute `http` or `https` URI with a host, else
/// `None`. The rules are those of the `http` crate's `Uri` (which the webhook sender's
/// client uses), written out here so the model needs no HTTP library: scheme `http://` or
/// `https://` in any case; an authority of URI characters, with `%` only in the userinfo
/// or an IPv6 zone, balanced brackets, at most one port colon and something after an `@`;
/// then a path, query and fragment of the characters those parts allow.
fn http_host(target: &str) -> Option<&str> {
    if target.len() > MAX_URI_LEN {
        return None;
    }
    let rest = strip_prefix_ignore_case(target, "http://")
        .or_else(|| strip_prefix_ignore_case(target, "https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    if !valid_authority(authority) || !valid_path_and_query(path_and_query) {
        return None;
    }
    // The host is what follows the last `@`: a bracketed IPv6 literal, or up to the port.
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = match host_port.find(']') {
        Some(close) if host_port.starts_with('[') => &host_port[..=close],
        _ => host_port.split(':').next().unwrap_or(host_port),
    };
    (!host.is_empty()).then_some(host)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The authority rules of [`http_host`].
fn valid_authority(authority: &str) -> bool {
    let bytes = authority.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let (mut colons, mut open, mut close, mut percent) = (0u32, false, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'%' => percent = true,
            b':' => {
                // Eight colons fill an IPv6 literal with a port; more is never valid.
                if colons >= 8 {
                    return false;
                }
                colons += 1;
            }
            b'[' => {
                if percent || open {
                    return false;
                }
                open = true;
            }
            b']' => {
                if !open || close {
                    return false;
                }
                close = true;
                // Those colons and `%` (a zone) were part of the IPv6 literal.
                colons = 0;
                percent = false;
            }
            b'@' => {
                if i == bytes.len() - 1 {
                    return false;
                }
                // Those colons and `%` were part of the userinfo.
                colons = 0;
                percent = false;
            }
            b if is_uri_char(b) => {}
            _ => return false,
        }
    }
    open == close && colons <= 1 && !percent
}

/// Characters of an authority besides `%`, `:`, `[`, `]` and `@` (RFC 3986 unreserved and
/// sub-delims).
fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!$&'()*+,-.;=_~".contains(&b)
}

/// The path and query rules of [`http_host`]: empty, or starting with `/`, `?` or `#`;
/// whatever follows a `#` is not checked.
fn valid_path_and_query(rest: &str) -> bool {
    let path_char = |b: u8| {
        matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E | 0x80..)
            || b"\"{}".contains(&b)
    };
    let query_char = |b: u8| matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E | 0x80..);
    let before_fragment = rest.split('#').next().unwrap_or(rest);
    let (path, query) = match before_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (before_fragment, None),
    };
    path.bytes().all(path_char) && query.is_none_or(|q| q.bytes().all(query_char))
}

/// Checks that a webhook target (already a valid [`webhook_target`]) does not name a
/// loopback, private, link-local or metadata address literally, unless `allow_private`
/// (local use and tests). Names are checked again, after resolution, at delivery time.
pub fn webhook_target_is_public(target: &str, allow_private: bool) -> Result<(), Error> {
    if allow_private {
        return Ok(());
    }
    match http_host(target).and_then(crate::net::refuse_host) {
        Some(why) => Err(Error::bad_request(format!(
            "target must be a public address: {why}; webhooks cannot be sent to internal \
             networks"
        ))),
        None => Ok(()),
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

/// Whether a webhook subscribed to `events` wants an event with routing key `trigger`:
/// `message` covers every `message:<role>` trigger, every other event name matches only
/// itself.
pub fn webhook_wants(events: &[String], trigger: &str) -> bool {
    match trigger.strip_prefix("message:") {
        Some(role) => webhook_wants_message(events, role),
        None => events.iter().any(|e| e == trigger),
    }
}

/// Checks message `metadata`: a flat object whose values are strings, numbers or booleans,
/// within [`MAX_METADATA_BYTES`].
pub fn metadata(value: &Value) -> Result<Map<String, Value>, Error> {
    let map = flat_object("metadata", value)?;
    if let Some((key, _)) = map.iter().find(|(_, v)| v.is_null()) {
        return Err(Error::bad_request(format!(
            "metadata.{key} is null; metadata values must be strings, numbers or booleans"
        )));
    }
    let size = value.to_string().len();
    if size > MAX_METADATA_BYTES {
        return Err(Error::bad_request(format!(
            "metadata is {size} bytes; the limit is {MAX_METADATA_BYTES}"
        )));
    }
    Ok(map)
}

/// Checks message `actions` (a JSON array of buttons) and returns them normalized, each
/// with a new `_id`: `link {text, uri}`, `postback {text, payload}`, `reply {text, payload,
/// iconUrl?}`, `buy {text, amount, currency?}` (amount in cents, currency defaulting to
/// `usd`). Unknown fields are dropped.
pub fn actions(value: &Value) -> Result<Vec<Value>, Error> {
    let Value::Array(items) = value else {
        return Err(Error::bad_request(
            "actions must be a JSON array of action objects",
        ));
    };
    if items.len() > MAX_ACTIONS {
        return Err(Error::bad_request(format!(
            "actions has {} items; the limit is {MAX_ACTIONS}",
            items.len()
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| action_item(&format!("actions[{i}]"), item))
        .collect()
}

/// Checks one action (see [`actions`]) and returns it normalized with a new `_id`.
pub fn action_item(field: &str, item: &Value) -> Result<Value, Error> {
    let Value::Object(map) = item else {
        return Err(Error::bad_request(format!("{field} must be a JSON object")));
    };
    let string = |name: &str, required: bool| -> Result<Option<String>, Error> {
        match map.get(name) {
            None | Some(Value::Null) if required => {
                Err(Error::bad_request(format!("{field}.{name} is required")))
            }
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if required && s.trim().is_empty() => Err(Error::bad_request(
                format!("{field}.{name} must not be empty"),
            )),
            Some(Value::String(s)) => {
                short_field(&format!("{field}.{name}"), s)?;
                Ok(Some(s.clone()))
            }
            Some(_) => Err(Error::bad_request(format!(
                "{field}.{name} must be a string"
            ))),
        }
    };
    let kind = string("type", true)?.unwrap_or_default();
    if !ACTION_TYPES.contains(&kind.as_str()) {
        return Err(Error::bad_request(format!(
            "{field}.type must be one of {}; got {kind:?}",
            ACTION_TYPES.join(", ")
        )));
    }
    let mut out = Map::new();
    out.insert("_id".to_owned(), Value::String(crate::id::new_id()));
    out.insert("type".to_owned(), Value::String(kind.clone()));
    out.insert("text".to_owned(), Value::from(string("text", true)?));
    match kind.as_str() {
        "link" => {
            let uri = string("uri", true)?.unwrap_or_default();
            if !has_scheme(&uri) || uri.chars().any(char::is_whitespace) {
                return Err(Error::bad_request(format!(
                    "{field}.uri must be an absolute URI such as https://example.com; got {uri:?}"
                )));
            }
            out.insert("uri".to_owned(), Value::String(uri));
        }
        "postback" | "reply" => {
            out.insert("payload".to_owned(), Value::from(string("payload", true)?));
            if kind == "reply" {
                if let Some(icon) = string("iconUrl", false)? {
                    if webhook_target(&icon).is_err() {
                        return Err(Error::bad_request(format!(
                            "{field}.iconUrl must be an absolute http or https URL; got {icon:?}"
                        )));
                    }
                    out.insert("iconUrl".to_owned(), Value::String(icon));
                }
            }
        }
        _ => {
            let amount = match map.get("amount") {
                Some(Value::Number(n)) => n.as_u64().filter(|a| *a > 0),
                _ => None,
            }
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "{field}.amount is required: a positive whole number of cents"
                ))
            })?;
            let currency = string("currency", false)?.unwrap_or_else(|| "usd".to_owned());
            if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(Error::bad_request(format!(
                    "{field}.currency must be a 3-letter ISO 4217 code such as usd; got {currency:?}"
                )));
            }
            out.insert("amount".to_owned(), Value::from(amount));
            out.insert(
                "currency".to_owned(),
                Value::String(currency.to_ascii_lowercase()),
            );
        }
    }
    Ok(Value::Object(out))
}

/// Whether `uri` starts with a URI scheme (`https:`, `mailto:`, `myapp:`) and has more.
fn has_scheme(uri: &str) -> bool {
    match uri.split_once(':') {
        Some((scheme, rest)) => {
            !rest.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// Whether a webhook subscribed to `events` wants a message by `role`.
pub fn webhook_wants_message(events: &[String], role: &str) -> bool {
    events.iter().any(|e| match e.as_str() {
        "*" | "message" => true,
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
    fn internal_webhook_targets_are_refused_unless_allowed() {
        for target in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://169.254.169.254/latest/meta-data",
            "https://10.0.0.7/hook",
            "http://localhost:3000/hook",
        ] {
            let err = webhook_target_is_public(target, false).unwrap_err();
            assert!(
                err.description.contains("public address"),
                "{target}: {err}"
            );
            assert!(webhook_target_is_public(target, true).is_ok(), "{target}");
        }
        assert!(webhook_target_is_public("https://example.com/hook", false).is_ok());
        assert!(webhook_target_is_public("https://93.184.216.34/hook", false).is_ok());
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
    fn webhook_wants_matches_non_message_events_by_name() {
        let hooks = vec!["postback".to_owned(), "message:appUser".to_owned()];
        assert!(webhook_wants(&hooks, "postback"));
        assert!(webhook_wants(&hooks, "message:appUser"));
        assert!(!webhook_wants(&hooks, "message:appMaker"));
        assert!(!webhook_wants(&hooks, "conversation:read"));
        assert!(webhook_wants(&["message".to_owned()], "message:appMaker"));
        assert!(!webhook_wants(&["message".to_owned()], "merge:appUser"));
        for event in WEBHOOK_EVENTS {
            assert!(webhook_events(&[event.to_owned()]).is_ok(), "{event}");
        }
    }

    #[test]
    fn actions_are_checked_and_get_ids() {
        let ok = actions(&json!([
            {"type": "link", "text": "Site", "uri": "https://example.com"},
            {"type": "postback", "text": "Yes", "payload": "YES", "extra": 1},
            {"type": "reply", "text": "Hi", "payload": "HI", "iconUrl": "https://x.io/i.png"},
            {"type": "buy", "text": "Buy", "amount": 500}
        ]))
        .unwrap();
        assert_eq!(ok.len(), 4);
        assert!(ok
            .iter()
            .all(|a| crate::id::is_id(a["_id"].as_str().unwrap())));
        assert_ne!(ok[0]["_id"], ok[1]["_id"]);
        assert!(ok[1].get("extra").is_none());
        assert_eq!(ok[3]["currency"], "usd");
        let bad = |v: Value| actions(&v).unwrap_err().description;
        assert!(bad(json!({})).contains("array"));
        assert!(bad(json!([{"type": "dance", "text": "x"}])).contains("actions[0].type"));
        assert!(bad(json!([{"type": "link", "text": "x"}])).contains("actions[0].uri"));
        assert!(bad(json!([{"type": "link", "text": "x", "uri": "nope"}])).contains("uri"));
        assert!(bad(json!([{"type": "postback", "text": "x"}])).contains("payload"));
        assert!(bad(json!([{"type": "buy", "text": "x", "amount": -1}])).contains("amount"));
        assert!(
            bad(json!([{"type": "buy", "text": "x", "amount": 1, "currency": "dollars"}]))
                .contains("currency")
        );
        assert!(bad(json!([{"type": "postback", "payload": "x"}])).contains("actions[0].text"));
        let many: Vec<Value> = (0..=MAX_ACTIONS)
            .map(|_| json!({"type": "postback", "text": "x", "payload": "y"}))
            .collect();
        assert!(bad(Value::Array(many)).contains("limit"));
    }

    #[test]
    fn metadata_is_flat_non_null_and_small() {
        assert!(metadata(&json!({"a": 1, "b": "x", "c": false})).is_ok());
        assert!(metadata(&json!({"a": null}))
            .unwrap_err()
            .description
            .contains("metadata.a"));
        assert!(metadata(&json!({"a": [1]})).is_err());
        assert!(metadata(&json!({"k": "x".repeat(MAX_METADATA_BYTES)})).is_err());
    }

    #[test]
    fn text_limits() {
        assert!(text("hi").is_ok());
        assert!(text("  ").is_err());
        assert!(text(&"x".repeat(MAX_TEXT_CHARS + 1)).is_err());
    }
}
