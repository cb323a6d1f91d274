//! Tenants with webhooks, and a steady load of message posts against them: every logical
//! message carries an `Idempotency-Key` and is retried with it after a 5xx or a connection
//! error, the way a careful client does; each attempt's outcome is recorded for the ledger.

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::TestApp;
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long one request may take before it counts as hung.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a client keeps retrying one message before giving up on it.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0xDA, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x02, 0x01, 0xA1, 0xE3, 0xD5, 0x8A, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// A webhook of a tenant: its name at the sink, and whether appUser messages match it.
#[derive(Debug, Clone)]
pub(crate) struct Hook {
    pub(crate) name: String,
    pub(crate) matches_app_user: bool,
}

/// An app with its app users and webhooks.
#[derive(Debug, Clone)]
pub(crate) struct Tenant {
    pub(crate) app: TestApp,
    pub(crate) users: Vec<String>,
    pub(crate) hooks: Vec<Hook>,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap()
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    auth: &e2e::Auth,
    body: Value,
) -> (StatusCode, Value) {
    let request = http.post(format!("{base}{path}")).json(&body);
    let request = match auth {
        e2e::Auth::AppToken(t) => request.header("app-token", t),
        e2e::Auth::Jwt(t) => request.bearer_auth(t),
        e2e::Auth::None => request,
    };
    e2e::parts(request.send().await.unwrap()).await
}

/// Creates an app with `users` app users and three webhooks at the sink: every message,
/// appUser messages, appMaker messages (which the load never posts).
pub(crate) async fn tenant(base: &str, sink: &str, index: usize, users: usize) -> Tenant {
    let http = client();
    let (status, body) = call(
        &http,
        base,
        "/v1/apps",
        &e2e::account_jwt(),
        json!({"name": e2e::unique("faults")}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["app"]["_id"].as_str().unwrap().to_owned();
    let token = body["app"]["appToken"].as_str().unwrap().to_owned();
    let (status, key) = call(
        &http,
        base,
        &format!("/v1/apps/{id}/keys"),
        &e2e::account_jwt(),
        json!({"name": "faults"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let app = TestApp {
        id,
        token,
        key_id: key["key"]["_id"].as_str().unwrap().to_owned(),
        secret: key["key"]["secret"].as_str().unwrap().to_owned(),
    };
    let mut hooks = Vec::new();
    for (suffix, events, matches_app_user) in [
        ("all", None, true),
        ("user", Some(json!(["message:appUser"])), true),
        ("maker", Some(json!(["message:appMaker"])), false),
    ] {
        let name = format!("{index}-{suffix}");
        let mut body = json!({"target": format!("{sink}/{name}")});
        if let Some(events) = events {
            body["events"] = events;
        }
        let (status, reply) = call(&http, base, "/v1/webhooks", &app.app_jwt(), body).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        hooks.push(Hook {
            name,
            matches_app_user,
        });
    }
    let mut ids = Vec::new();
    for i in 0..users {
        let (status, body) = call(
            &http,
            base,
            "/v1/init",
            &app.app_token(),
            json!({"device": {"id": format!("faults-{index}-{i}"), "platform": "ios"}}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        ids.push(body["appUser"]["_id"].as_str().unwrap().to_owned());
    }
    Tenant {
        app,
        users: ids,
        hooks,
    }
}

/// How one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// An HTTP answer other than 201, and whether its body was the API's error shape.
    Status(u16, bool),
    /// Refused, reset or closed before an answer: the client knows nothing was confirmed.
    Connection,
    /// No answer within [`REQUEST_TIMEOUT`].
    Timeout,
}

/// One logical message: every attempt to post it under one key.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) app_id: String,
    pub(crate) user: String,
    pub(crate) key: String,
    pub(crate) image: bool,
    pub(crate) attempts: u32,
    pub(crate) failures: Vec<Failure>,
    /// When each failure happened.
    pub(crate) failed_at: Vec<Instant>,
    /// The message id of the 201, if one came.
    pub(crate) message_id: Option<String>,
    /// Whether the 201 was a replay of an earlier attempt that was stored.
    pub(crate) replayed: bool,
    /// The body the key was sent with (for re-sending it later).
    pub(crate) text_body: Value,
}

fn is_error_body(body: &Value) -> bool {
    body["error"]["code"].is_string() && body["error"]["description"].is_string()
}

/// Sends one attempt of `record`'s message.
async fn attempt(http: &reqwest::Client, base: &str, tenant: &Tenant, record: &mut Record) {
    record.attempts += 1;
    let kind = if record.image { "images" } else { "messages" };
    let request = http
        .post(format!(
            "{base}/v1/appusers/{}/conversation/{kind}",
            record.user
        ))
        .header("app-token", &tenant.app.token)
        .header("idempotency-key", &record.key);
    let request = if record.image {
        let form = Form::new()
            .part(
                "source",
                Part::bytes(PNG.to_vec())
                    .file_name("dot.png")
                    .mime_str("image/png")
                    .unwrap(),
            )
            .text("role", "appUser")
            .text("metadata", json!({"k": record.key}).to_string());
        request.multipart(form)
    } else {
        request.json(&record.text_body)
    };
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let replayed = response.headers().contains_key("idempotent-replayed");
            let body: Value = match response.json().await {
                Ok(body) => body,
                Err(e) if e.is_timeout() => {
                    record.failures.push(Failure::Timeout);
                    return;
                }
                Err(_) => Value::Null,
            };
            if status == StatusCode::CREATED {
                record.message_id = body["message"]["_id"].as_str().map(str::to_owned);
                record.replayed = replayed;
            } else {
                record
                    .failures
                    .push(Failure::Status(status.as_u16(), is_error_body(&body)));
            }
        }
        Err(e) if e.is_timeout() => record.failures.push(Failure::Timeout),
        Err(_) => record.failures.push(Failure::Connection),
    }
}

/// One client posting to one app user until `stop`, one message at a time, each retried
/// until it is accepted (or for [`GIVE_UP_AFTER`]), pausing `pace` between messages.
async fn client_loop(
    base: String,
    tenant: Arc<Tenant>,
    user: String,
    pace: Duration,
    stop: CancellationToken,
) -> Vec<Record> {
    let http = client();
    let mut records = Vec::new();
    for n in 0u64.. {
        if stop.is_cancelled() {
            break;
        }
        let key = domain::id::new_id();
        let mut record = Record {
            app_id: tenant.app.id.clone(),
            user: user.clone(),
            image: n % 10 == 9,
            attempts: 0,
            failures: Vec::new(),
            failed_at: Vec::new(),
            message_id: None,
            replayed: false,
            text_body: json!({"text": format!("fault load {key}"), "role": "appUser", "metadata": {"k": key}}),
            key,
        };
        let start = Instant::now();
        loop {
            let failed = record.failures.len();
            attempt(&http, &base, &tenant, &mut record).await;
            if record.failures.len() > failed {
                record.failed_at.push(Instant::now());
            }
            if record.message_id.is_some() || start.elapsed() > GIVE_UP_AFTER {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        records.push(record);
        tokio::time::sleep(pace).await;
    }
    records
}

/// The running load.
pub(crate) struct Load {
    stop: CancellationToken,
    clients: JoinSet<Vec<Record>>,
}

impl Load {
    /// Starts one client per app user of every tenant.
    pub(crate) fn start(base: &str, tenants: &[Tenant], pace: Duration) -> Load {
        let stop = CancellationToken::new();
        let mut clients = JoinSet::new();
        for tenant in tenants {
            let tenant = Arc::new(tenant.clone());
            for user in &tenant.users {
                clients.spawn(client_loop(
                    base.to_owned(),
                    tenant.clone(),
                    user.clone(),
                    pace,
                    stop.clone(),
                ));
            }
        }
        Load { stop, clients }
    }

    /// Stops the clients (each finishes the message it is on) and returns every record.
    pub(crate) async fn stop(mut self) -> Vec<Record> {
        self.stop.cancel();
        let mut records = Vec::new();
        while let Some(joined) = self.clients.join_next().await {
            records.extend(joined.unwrap());
        }
        records
    }
}

/// Re-sends each of `records` (accepted text messages) with its key and body: each must
/// come back as a replay of the original message.
pub(crate) async fn resend(base: &str, tenants: &[Tenant], records: &[Record]) -> Vec<String> {
    let http = client();
    let mut wrong = Vec::new();
    for record in records {
        let Some(tenant) = tenants.iter().find(|t| t.app.id == record.app_id) else {
            continue;
        };
        let mut again = record.clone();
        again.message_id = None;
        attempt(&http, base, tenant, &mut again).await;
        if again.message_id != record.message_id || !again.replayed {
            wrong.push(format!(
                "key {}: first {:?}, again {:?} (replayed {}, {:?})",
                record.key, record.message_id, again.message_id, again.replayed, again.failures
            ));
        }
    }
    wrong
}
