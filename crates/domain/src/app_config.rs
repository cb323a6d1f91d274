//! What an app maker configures beyond keys: the app's settings (the Web Messenger's look),
//! its persistent menu and its integrations. Each is checked here, once, and normalized.

use serde_json::{Map, Value};

use crate::validate::short_field;
use crate::Error;

/// The most items a persistent menu holds.
pub const MAX_MENU_ITEMS: usize = 10;

/// The menu item types.
pub const MENU_ITEM_TYPES: [&str; 2] = ["link", "postback"];

/// The settings an app starts with: the hosted API's Web Messenger defaults of 2016-2017.
pub fn default_settings() -> Value {
    serde_json::json!({
        "web": {
            "accentColor": "0099ff",
            "linkColor": "0099ff",
            "isAccentColorDark": true,
            "displayStyle": "button",
            "channels": {},
        }
    })
}

/// The effective settings: `stored` (a JSON object) merged over the defaults.
pub fn effective_settings(stored: &Value) -> Value {
    let mut settings = default_settings();
    merge(&mut settings, stored);
    settings
}

/// Merges the object `patch` into the object `into`, key by key; nested objects merge too.
pub fn merge(into: &mut Value, patch: &Value) {
    let (Value::Object(into), Value::Object(patch)) = (into, patch) else {
        return;
    };
    for (key, value) in patch {
        match into.get_mut(key) {
            Some(existing @ Value::Object(_)) if value.is_object() => merge(existing, value),
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Checks a settings update (`{web?: {...}}`) and returns it normalized. Unknown keys are
/// refused, so a typo is an error rather than a setting that does nothing.
pub fn settings_patch(value: &Value) -> Result<Value, Error> {
    let Value::Object(map) = value else {
        return Err(Error::bad_request("settings must be a JSON object"));
    };
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "web" => {
                out.insert(key.clone(), web_settings(value)?);
            }
            other => {
                return Err(Error::bad_request(format!(
                    "settings.{other} is not a setting; the settings are: web"
                )))
            }
        }
    }
    Ok(Value::Object(out))
}

fn web_settings(value: &Value) -> Result<Value, Error> {
    let Value::Object(map) = value else {
        return Err(Error::bad_request("settings.web must be a JSON object"));
    };
    let mut out = Map::new();
    for (key, value) in map {
        let field = format!("settings.web.{key}");
        match key.as_str() {
            "accentColor" | "linkColor" => {
                let color = value
                    .as_str()
                    .map(|c| c.trim_start_matches('#'))
                    .filter(|c| c.len() == 6 && c.chars().all(|ch| ch.is_ascii_hexdigit()))
                    .ok_or_else(|| {
                        Error::bad_request(format!(
                            "{field} must be a hex colour such as \"0099ff\""
                        ))
                    })?;
                out.insert(key.clone(), Value::String(color.to_ascii_lowercase()));
            }
            "isAccentColorDark" => {
                let dark = value
                    .as_bool()
                    .ok_or_else(|| Error::bad_request(format!("{field} must be true or false")))?;
                out.insert(key.clone(), Value::Bool(dark));
            }
            "displayStyle" => match value.as_str() {
                Some(style @ ("button" | "tab")) => {
                    out.insert(key.clone(), Value::String(style.to_owned()));
                }
                _ => {
                    return Err(Error::bad_request(format!(
                        "{field} must be \"button\" or \"tab\""
                    )))
                }
            },
            "channels" => {
                let Value::Object(channels) = value else {
                    return Err(Error::bad_request(format!("{field} must be a JSON object")));
                };
                if serde_json::to_vec(channels).map_or(0, |b| b.len())
                    > crate::validate::MAX_OBJECT_BYTES
                {
                    return Err(Error::bad_request(format!("{field} is too large")));
                }
                out.insert(key.clone(), value.clone());
            }
            "businessName" | "businessIconUrl" | "backgroundImageUrl" | "headerText"
            | "introductionText" | "inputPlaceholder" | "sendButtonText" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| Error::bad_request(format!("{field} must be a string")))?;
                short_field(&field, text)?;
                out.insert(key.clone(), Value::String(text.to_owned()));
            }
            other => {
                return Err(Error::bad_request(format!(
                    "settings.web.{other} is not a Web Messenger setting; they are: accentColor, \
                     linkColor, isAccentColorDark, displayStyle, channels, businessName, \
                     businessIconUrl, backgroundImageUrl, headerText, introductionText, \
                     inputPlaceholder, sendButtonText"
                )))
            }
        }
    }
    Ok(Value::Object(out))
}

/// Checks a persistent menu's `items` and returns them normalized, each with a new `_id`:
/// `link {text, uri}` or `postback {text, payload}`, as message actions are.
pub fn menu_items(value: &Value) -> Result<Vec<Value>, Error> {
    let Value::Array(items) = value else {
        return Err(Error::bad_request(
            "items must be a JSON array of menu items",
        ));
    };
    if items.len() > MAX_MENU_ITEMS {
        return Err(Error::bad_request(format!(
            "items has {} entries; a menu holds at most {MAX_MENU_ITEMS}",
            items.len()
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = format!("items[{i}]");
            let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
            if !MENU_ITEM_TYPES.contains(&kind) {
                return Err(Error::bad_request(format!(
                    "{field}.type must be one of {}",
                    MENU_ITEM_TYPES.join(", ")
                )));
            }
            crate::validate::action_item(&field, item)
        })
        .collect()
}

/// One integration type: its required fields, and which of its fields are secrets.
struct IntegrationType {
    name: &'static str,
    /// Alternative sets of required fields (any one set suffices).
    required: &'static [&'static [&'static str]],
    /// String fields shown in answers.
    public: &'static [&'static str],
    /// Boolean fields shown in answers.
    flags: &'static [&'static str],
    /// String fields never shown.
    secrets: &'static [&'static str],
    /// Object fields never shown (with the string keys each must hold).
    secret_objects: &'static [(&'static str, &'static [&'static str])],
}

/// The service account key a Firebase project issues: the fields FCM HTTP v1 needs.
const SERVICE_ACCOUNT_FIELDS: &[&str] = &["project_id", "client_email", "private_key", "token_uri"];

/// The types smooch-core 3.x validates, plus the current push credential shapes.
const INTEGRATION_TYPES: &[IntegrationType] = &[
    IntegrationType {
        name: "apn",
        required: &[
            &["certificate"],
            &["keyId", "teamId", "bundleId", "privateKey"],
        ],
        public: &["keyId", "teamId", "bundleId"],
        flags: &["production", "autoUpdateBadge"],
        secrets: &["certificate", "password", "privateKey"],
        secret_objects: &[],
    },
    IntegrationType {
        name: "fcm",
        required: &[&["serverKey", "senderId"], &["serviceAccountKey"]],
        public: &["senderId"],
        flags: &[],
        secrets: &["serverKey"],
        secret_objects: &[("serviceAccountKey", SERVICE_ACCOUNT_FIELDS)],
    },
    IntegrationType {
        name: "messenger",
        required: &[&["pageAccessToken", "appId", "appSecret"]],
        public: &["appId"],
        flags: &[],
        secrets: &["pageAccessToken", "appSecret"],
        secret_objects: &[],
    },
    IntegrationType {
        name: "twilio",
        required: &[&["accountSid", "authToken", "phoneNumberSid"]],
        public: &["accountSid", "phoneNumberSid"],
        flags: &[],
        secrets: &["authToken"],
        secret_objects: &[],
    },
    IntegrationType {
        name: "telegram",
        required: &[&["token"]],
        public: &[],
        flags: &[],
        secrets: &["token"],
        secret_objects: &[],
    },
    IntegrationType {
        name: "line",
        required: &[&["channelAccessToken", "channelSecret"]],
        public: &[],
        flags: &[],
        secrets: &["channelAccessToken", "channelSecret"],
        secret_objects: &[],
    },
    IntegrationType {
        name: "viber",
        required: &[&["token"]],
        public: &[],
        flags: &[],
        secrets: &["token"],
        secret_objects: &[],
    },
    IntegrationType {
        name: "wechat",
        required: &[&["appId", "appSecret"]],
        public: &["appId"],
        flags: &[],
        secrets: &["appSecret", "encodingAesKey"],
        secret_objects: &[],
    },
    IntegrationType {
        name: "mailgun",
        required: &[&["apiKey", "domain"]],
        public: &["domain", "incomingAddress"],
        flags: &[],
        secrets: &["apiKey"],
        secret_objects: &[],
    },
    IntegrationType {
        name: "frontendEmail",
        required: &[&[]],
        public: &["fromAddress"],
        flags: &[],
        secrets: &[],
        secret_objects: &[],
    },
];

/// The integration types, for error messages and documentation.
pub fn integration_types() -> Vec<&'static str> {
    INTEGRATION_TYPES.iter().map(|t| t.name).collect()
}

/// A checked integration: its type, the fields that may be shown, and its secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIntegration {
    /// The type (`apn`, `fcm`, `messenger`, ...).
    pub kind: String,
    /// Shown in answers.
    pub config: Map<String, Value>,
    /// Never shown.
    pub secrets: Map<String, Value>,
}

/// Checks an integration body (`{type, ...fields}`): a known type, one complete set of its
/// required fields, each field of the right type. Fields the type does not have are
/// dropped.
pub fn integration(body: &Value) -> Result<NewIntegration, Error> {
    let Value::Object(map) = body else {
        return Err(Error::bad_request("the body must be a JSON object"));
    };
    let kind = match map.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        None | Some(Value::Null) => return Err(Error::bad_request("type is required")),
        Some(_) => return Err(Error::bad_request("type must be a string")),
    };
    let spec = INTEGRATION_TYPES
        .iter()
        .find(|t| t.name == kind)
        .ok_or_else(|| {
            Error::bad_request(format!(
                "type {kind:?} is not an integration type; the types are: {}",
                integration_types().join(", ")
            ))
        })?;
    let present = |name: &str| match map.get(name) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(_) => true,
    };
    if !spec
        .required
        .iter()
        .any(|set| set.iter().all(|f| present(f)))
    {
        let sets: Vec<String> = spec.required.iter().map(|set| set.join(", ")).collect();
        return Err(Error::bad_request(format!(
            "a {kind} integration needs {}",
            sets.join("; or ")
        )));
    }
    let mut config = Map::new();
    let mut secrets = Map::new();
    for (name, value) in map {
        if value.is_null() || name == "type" {
            continue;
        }
        let name = name.as_str();
        if spec.public.contains(&name) || spec.secrets.contains(&name) {
            let text = value
                .as_str()
                .ok_or_else(|| Error::bad_request(format!("{name} must be a string")))?;
            if spec.public.contains(&name) {
                short_field(name, text)?;
                config.insert(name.to_owned(), value.clone());
            } else {
                if text.len() > crate::validate::MAX_OBJECT_BYTES {
                    return Err(Error::bad_request(format!(
                        "{name} is longer than {} bytes",
                        crate::validate::MAX_OBJECT_BYTES
                    )));
                }
                secrets.insert(name.to_owned(), value.clone());
            }
        } else if spec.flags.contains(&name) {
            if !value.is_boolean() {
                return Err(Error::bad_request(format!("{name} must be true or false")));
            }
            config.insert(name.to_owned(), value.clone());
        } else if let Some((_, keys)) = spec.secret_objects.iter().find(|(n, _)| *n == name) {
            // A service account key may arrive as the object or as its JSON text.
            let object = match value {
                Value::Object(o) => o.clone(),
                Value::String(text) => match serde_json::from_str::<Value>(text) {
                    Ok(Value::Object(o)) => o,
                    _ => {
                        return Err(Error::bad_request(format!(
                            "{name} must be a JSON object (the key file a Firebase project issues)"
                        )))
                    }
                },
                _ => {
                    return Err(Error::bad_request(format!(
                        "{name} must be a JSON object (the key file a Firebase project issues)"
                    )))
                }
            };
            if let Some(missing) = keys
                .iter()
                .find(|k| !object.get(**k).is_some_and(Value::is_string))
            {
                return Err(Error::bad_request(format!(
                    "{name}.{missing} is required (a string)"
                )));
            }
            if serde_json::to_vec(&object).map_or(0, |b| b.len())
                > crate::validate::MAX_OBJECT_BYTES
            {
                return Err(Error::bad_request(format!("{name} is too large")));
            }
            if let Some(Value::String(project)) = object.get("project_id") {
                config.insert("projectId".to_owned(), Value::String(project.clone()));
            }
            secrets.insert(name.to_owned(), Value::Object(object));
        }
    }
    Ok(NewIntegration {
        kind: kind.to_owned(),
        config,
        secrets,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn integrations_keep_secrets_apart_and_need_a_complete_field_set() {
        let fcm = integration(&json!({"type": "fcm", "serverKey": "k", "senderId": "42", "x": 1}))
            .unwrap();
        assert_eq!(fcm.kind, "fcm");
        assert_eq!(Value::Object(fcm.config), json!({"senderId": "42"}));
        assert_eq!(Value::Object(fcm.secrets), json!({"serverKey": "k"}));

        let apn = integration(&json!({
            "type": "apn", "keyId": "K", "teamId": "T", "bundleId": "b", "privateKey": "p",
            "production": false
        }))
        .unwrap();
        assert_eq!(apn.config["production"], json!(false));
        assert!(apn.secrets.contains_key("privateKey"));
        assert!(!apn.config.contains_key("privateKey"));

        let missing = integration(&json!({"type": "apn", "password": "p"})).unwrap_err();
        assert!(missing.description.contains("certificate"), "{missing}");
        assert!(integration(&json!({"type": "smoke"})).is_err());
        assert!(integration(&json!({"serverKey": "k"})).is_err());
        assert!(integration(&json!({"type": "fcm", "serverKey": 5, "senderId": "1"})).is_err());
        assert!(
            integration(&json!({"type": "apn", "certificate": "c", "production": "yes"})).is_err()
        );
    }

    #[test]
    fn a_service_account_key_is_an_object_or_its_text() {
        let key = json!({
            "project_id": "p1", "client_email": "a@b", "private_key": "pem",
            "token_uri": "http://t"
        });
        let as_object = integration(&json!({"type": "fcm", "serviceAccountKey": key})).unwrap();
        let as_text =
            integration(&json!({"type": "fcm", "serviceAccountKey": key.to_string()})).unwrap();
        assert_eq!(as_object, as_text);
        assert_eq!(as_object.config["projectId"], "p1");
        let partial = json!({"type": "fcm", "serviceAccountKey": {"project_id": "p"}});
        assert!(integration(&partial).is_err());
    }

    #[test]
    fn menu_items_are_links_and_postbacks() {
        let items = menu_items(&json!([
            {"type": "link", "text": "Site", "uri": "https://example.com"},
            {"type": "postback", "text": "Help", "payload": "HELP"}
        ]))
        .unwrap();
        assert_eq!(items.len(), 2);
        assert!(items[0]["_id"].is_string());
        assert!(menu_items(&json!([{"type": "buy", "text": "x", "amount": 5}])).is_err());
        assert!(menu_items(&json!([{"type": "link", "text": "x"}])).is_err());
        assert!(menu_items(&json!({"items": []})).is_err());
    }

    #[test]
    fn settings_patches_are_checked_and_merge_over_defaults() {
        let patch = settings_patch(&json!({"web": {"accentColor": "#AA00FF"}})).unwrap();
        let mut stored = json!({});
        merge(&mut stored, &patch);
        let settings = effective_settings(&stored);
        assert_eq!(settings["web"]["accentColor"], "aa00ff");
        assert_eq!(settings["web"]["displayStyle"], "button");
        assert!(settings_patch(&json!({"web": {"accentColor": "blue"}})).is_err());
        assert!(settings_patch(&json!({"colour": 1})).is_err());
        assert!(settings_patch(&json!({"web": {"displayStyle": "popup"}})).is_err());
    }
}
