//! An app's push credentials as the users service stores them (an `apn` and an `fcm`
//! integration, public fields and secrets apart), turned into what each protocol needs.
//! Secrets stay in memory only for the send that uses them and are never logged.

use proto::v1 as pb;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// How the app authenticates to APNs.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum ApnAuth {
    /// A provider token signed with the team's .p8 key (ES256).
    Token {
        key_id: String,
        team_id: String,
        /// PEM text of the PKCS#8 key.
        private_key: String,
    },
    /// A TLS client certificate: the base64 of a PKCS#12 (.p12) file holding the
    /// certificate Apple issued and its key, and the file's password (often empty).
    Certificate {
        p12_base64: String,
        password: String,
    },
}

/// The app's APNs credentials.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Apn {
    pub(crate) auth: ApnAuth,
    /// The app's bundle id: the `apns-topic`.
    pub(crate) bundle_id: Option<String>,
    /// Whether to use the production host (otherwise the sandbox).
    pub(crate) production: bool,
    /// Whether to set the badge (absent means yes).
    pub(crate) auto_update_badge: bool,
}

/// The app's FCM credentials.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Fcm {
    /// FCM HTTP v1 with a service account.
    ServiceAccount {
        project_id: String,
        client_email: String,
        /// PEM text of the RSA key.
        private_key: String,
        token_uri: String,
    },
    /// The legacy send endpoint with a server key.
    Legacy { server_key: String },
}

/// Both, as configured for one app.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) app_name: String,
    pub(crate) apn: Option<Apn>,
    pub(crate) fcm: Option<Fcm>,
}

// Secrets never reach a log line, even through `{:?}`.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("app_name", &self.app_name)
            .field("apn", &self.apn.is_some())
            .field("fcm", &self.fcm.is_some())
            .finish()
    }
}

fn object(provider: &'static str, what: &str, json: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(json) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Error::Credentials {
            provider,
            reason: format!("stored {what} are not a JSON object"),
        }),
    }
}

fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn required(provider: &'static str, map: &Map<String, Value>, key: &str) -> Result<String> {
    text(map, key).ok_or_else(|| Error::Credentials {
        provider,
        reason: format!("{key} is missing"),
    })
}

impl Credentials {
    /// Reads the users service's answer.
    pub(crate) fn from_pb(answer: pb::PushCredentials) -> Result<Self> {
        let apn = answer.apn.map(|c| apn(&c)).transpose()?;
        let fcm = answer.fcm.map(|c| fcm(&c)).transpose()?;
        Ok(Credentials {
            app_name: answer.app_name,
            apn,
            fcm,
        })
    }
}

fn apn(stored: &pb::PushCredential) -> Result<Apn> {
    let config = object("apn", "fields", &stored.config_json)?;
    let secrets = object("apn", "secrets", &stored.secrets_json)?;
    let auth = match text(&secrets, "privateKey") {
        Some(private_key) => ApnAuth::Token {
            key_id: required("apn", &config, "keyId")?,
            team_id: required("apn", &config, "teamId")?,
            private_key,
        },
        None => ApnAuth::Certificate {
            p12_base64: required("apn", &secrets, "certificate")?,
            password: secrets
                .get("password")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
    };
    Ok(Apn {
        auth,
        bundle_id: text(&config, "bundleId"),
        production: config.get("production").and_then(Value::as_bool) == Some(true),
        auto_update_badge: config.get("autoUpdateBadge").and_then(Value::as_bool) != Some(false),
    })
}

fn fcm(stored: &pb::PushCredential) -> Result<Fcm> {
    let secrets = object("fcm", "secrets", &stored.secrets_json)?;
    if let Some(Value::Object(account)) = secrets.get("serviceAccountKey") {
        return Ok(Fcm::ServiceAccount {
            project_id: required("fcm", account, "project_id")?,
            client_email: required("fcm", account, "client_email")?,
            private_key: required("fcm", account, "private_key")?,
            token_uri: required("fcm", account, "token_uri")?,
        });
    }
    Ok(Fcm::Legacy {
        server_key: required("fcm", &secrets, "serverKey")?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn stored(config: Value, secrets: Value) -> pb::PushCredential {
        pb::PushCredential {
            integration_id: "i".into(),
            config_json: config.to_string(),
            secrets_json: secrets.to_string(),
        }
    }

    #[test]
    fn apn_token_credentials_default_to_sandbox_with_badge() {
        let apn = apn(&stored(
            serde_json::json!({"keyId": "K", "teamId": "T", "bundleId": "com.x"}),
            serde_json::json!({"privateKey": "PEM"}),
        ))
        .unwrap();
        assert!(!apn.production);
        assert!(apn.auto_update_badge);
        assert_eq!(apn.bundle_id.as_deref(), Some("com.x"));
        assert!(matches!(apn.auth, ApnAuth::Token { ref key_id, .. } if key_id == "K"));
    }

    #[test]
    fn fcm_prefers_the_service_account_over_the_server_key() {
        let account = serde_json::json!({"project_id": "p", "client_email": "e",
            "private_key": "k", "token_uri": "http://t"});
        let both = fcm(&stored(
            serde_json::json!({}),
            serde_json::json!({"serverKey": "s", "serviceAccountKey": account}),
        ))
        .unwrap();
        assert!(matches!(both, Fcm::ServiceAccount { .. }));
        let legacy = fcm(&stored(
            serde_json::json!({}),
            serde_json::json!({"serverKey": "s"}),
        ));
        assert!(matches!(legacy.unwrap(), Fcm::Legacy { .. }));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let creds = Credentials {
            app_name: "a".into(),
            apn: None,
            fcm: Some(Fcm::Legacy {
                server_key: "very-secret".into(),
            }),
        };
        assert!(!format!("{creds:?}").contains("very-secret"));
    }
}
