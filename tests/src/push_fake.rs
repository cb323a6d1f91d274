//! Fake push providers for the push tests: one HTTP server on a free port, served both in
//! clear (HTTP/1.1, or HTTP/2 with prior knowledge) and over TLS (ALPN `h2`, a certificate
//! of the test CA in `tests/fixtures/push/`), that plays APNs (`/3/device/{token}`), FCM's OAuth2
//! token endpoint (`/token`), FCM HTTP v1 (`/v1/projects/{id}/messages:send`) and legacy
//! FCM (`/fcm/send`), and records every request it gets. Tests find their own requests by
//! their device tokens (unique per test), so tests run in parallel.
//!
//! A device token containing `gone` is refused as unregistered; one containing `busy` is
//! answered 429 (APNs) or 503 (FCM) the first time, then accepted; one containing `down`
//! is answered 503 every time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// An APNs .p8 key (P-256, PKCS#8) made for these tests only.
pub const APNS_KEY: &str = include_str!("../fixtures/push/apns-key.pem");

/// Its public key, to verify provider tokens.
pub const APNS_PUBLIC_KEY: &str = include_str!("../fixtures/push/apns-key.pub");

/// A service account's RSA key (PKCS#8) made for these tests only.
pub const FCM_KEY: &str = include_str!("../fixtures/push/fcm-key.pem");

/// Its public key, to verify token assertions.
pub const FCM_PUBLIC_KEY: &str = include_str!("../fixtures/push/fcm-key.pub");

/// One request the fakes got.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `apns`, `token`, `v1` or `legacy`.
    pub kind: &'static str,
    /// The request path.
    pub path: String,
    /// Whether it came over HTTP/2.
    pub http2: bool,
    /// Whether it came over TLS.
    pub tls: bool,
    /// The DER of the client certificate its TLS connection presented (verified against
    /// `apns-client-ca.pem`), if any.
    pub client_cert: Option<Vec<u8>>,
    /// Its headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// Its body: JSON, or for the token endpoint the form fields as an object.
    pub body: Value,
    /// The status answered.
    pub status: u16,
    /// The body answered.
    pub answer: Value,
}

#[derive(Default)]
struct Fakes {
    recorded: Mutex<Vec<Recorded>>,
    /// Tokens already answered "busy" once.
    busy_seen: Mutex<Vec<String>>,
    issued: Mutex<u64>,
}

static FAKES: OnceLock<Arc<Fakes>> = OnceLock::new();
static BASE: OnceLock<String> = OnceLock::new();
static TLS_BASE: OnceLock<String> = OnceLock::new();

/// The fakes' TLS base URL, once the suite has started them.
pub fn tls_base() -> String {
    crate::suite();
    TLS_BASE
        .get()
        .cloned()
        .expect("the suite starts the push fakes")
}

/// The fakes' base URL, once the suite has started them.
pub fn base() -> String {
    crate::suite();
    BASE.get()
        .cloned()
        .expect("the suite starts the push fakes")
}

fn fakes() -> Arc<Fakes> {
    FAKES.get_or_init(|| Arc::new(Fakes::default())).clone()
}

/// The test CA that signed the TLS listener's certificate (for `SMOOCH_PUSH_CA_FILE`).
pub const CA_PEM: &str = include_str!("../fixtures/push/ca.pem");

/// Marks requests that came through the TLS listener, with the client certificate their
/// connection presented.
#[derive(Debug, Clone)]
struct OverTls {
    client_cert: Option<Vec<u8>>,
}

/// The client CA the TLS listener verifies client certificates against (APNs certificate
/// authentication).
pub const CLIENT_CA_PEM: &str = include_str!("../fixtures/push/apns-client-ca.pem");
/// The client certificate in `APNS_CLIENT_P12`.
pub const APNS_CLIENT_CERT_PEM: &str = include_str!("../fixtures/push/apns-client.pem");
/// A test APNs certificate for `com.example.certapp` as PKCS#12 (AES-256, HMAC-SHA256).
pub const APNS_CLIENT_P12: &[u8] = include_bytes!("../fixtures/push/apns-client.p12");
/// The same, in the legacy PKCS#12 encryption (RC2-40, 3DES, HMAC-SHA1).
pub const APNS_CLIENT_LEGACY_P12: &[u8] = include_bytes!("../fixtures/push/apns-client-legacy.p12");
/// The password of both.
pub const APNS_CLIENT_P12_PASSWORD: &str = "test-only-password";

/// Where the fakes listen.
pub struct Bases {
    /// `http://127.0.0.1:PORT`.
    pub cleartext: String,
    /// `https://127.0.0.1:PORT`.
    pub tls: String,
}

/// Starts the fakes on the current runtime, in clear and over TLS.
pub async fn start() -> Bases {
    let tls = start_tls(router()).await;
    let cleartext = start_cleartext().await;
    let _ = TLS_BASE.set(tls.clone());
    Bases { cleartext, tls }
}

fn router() -> Router {
    Router::new()
        .route("/3/device/{token}", post(apns))
        .route("/token", post(token))
        .route("/v1/projects/{project}/messages:send", post(v1))
        .route("/fcm/send", post(legacy))
        .with_state(fakes())
}

/// Serves `app` over TLS (HTTP/2 or HTTP/1.1 by ALPN) on a free port.
async fn start_tls(app: Router) -> String {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certs = CertificateDer::pem_slice_iter(include_bytes!("../fixtures/push/server.pem"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("../fixtures/push/server.key")).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    // Client certificates are asked for, verified against the client CA when presented,
    // and optional (provider-token clients present none).
    let mut client_roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(CLIENT_CA_PEM.as_bytes()) {
        client_roots.add(ca.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(client_roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let client_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|cert| cert.as_ref().to_vec());
                let app = app.layer(axum::Extension(OverTls { client_cert }));
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    format!("https://{addr}")
}

/// Serves the fakes in clear on a free port and returns the base URL (`http://...`).
async fn start_cleartext() -> String {
    let app = router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");
    let _ = BASE.set(base.clone());
    base
}

fn headers_of(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect()
}

impl Fakes {
    fn record(&self, r: Recorded) -> Response {
        let answer = (
            StatusCode::from_u16(r.status).unwrap(),
            Json(r.answer.clone()),
        )
            .into_response();
        self.recorded.lock().unwrap().push(r);
        answer
    }

    /// Whether `token` is to be answered "busy" now (its first request only).
    fn busy(&self, token: &str) -> bool {
        if !token.contains("busy") {
            return false;
        }
        let mut seen = self.busy_seen.lock().unwrap();
        if seen.iter().any(|t| t == token) {
            return false;
        }
        seen.push(token.to_owned());
        true
    }
}

async fn apns(
    State(fakes): State<Arc<Fakes>>,
    Path(device): Path<String>,
    version: Version,
    over_tls: Option<axum::Extension<OverTls>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let authenticated = headers.contains_key("authorization")
        || over_tls.as_ref().is_some_and(|t| t.client_cert.is_some());
    let (status, answer) = if !authenticated {
        // Neither a provider token nor a (verified) client certificate.
        (403, json!({"reason": "MissingProviderToken"}))
    } else if device.contains("gone") {
        (410, json!({"reason": "Unregistered", "timestamp": 1}))
    } else if device.contains("down") {
        (503, json!({"reason": "ServiceUnavailable"}))
    } else if fakes.busy(&device) {
        (429, json!({"reason": "TooManyRequests"}))
    } else {
        (200, Value::Null)
    };
    fakes.record(Recorded {
        kind: "apns",
        path: format!("/3/device/{device}"),
        http2: version == Version::HTTP_2,
        tls: over_tls.is_some(),
        client_cert: over_tls.as_ref().and_then(|t| t.client_cert.clone()),
        headers: headers_of(&headers),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
        status,
        answer,
    })
}

async fn token(
    State(fakes): State<Arc<Fakes>>,
    version: Version,
    over_tls: Option<axum::Extension<OverTls>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form: serde_json::Map<String, Value> = body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), Value::String(decode(v))))
        .collect();
    let n = {
        let mut issued = fakes.issued.lock().unwrap();
        *issued += 1;
        *issued
    };
    fakes.record(Recorded {
        kind: "token",
        path: "/token".to_owned(),
        http2: version == Version::HTTP_2,
        tls: over_tls.is_some(),
        client_cert: over_tls.as_ref().and_then(|t| t.client_cert.clone()),
        headers: headers_of(&headers),
        body: Value::Object(form),
        status: 200,
        answer: json!({"access_token": format!("ya29.test-{n}"), "expires_in": 3600, "token_type": "Bearer"}),
    })
}

/// Percent-decoding of a form value (what the assertion and grant type need).
fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

async fn v1(
    State(fakes): State<Arc<Fakes>>,
    Path(project): Path<String>,
    version: Version,
    over_tls: Option<axum::Extension<OverTls>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let device = body["message"]["token"].as_str().unwrap_or("").to_owned();
    let (status, answer) = if device.contains("gone") {
        (
            404,
            json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "Requested entity was not found.",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}}),
        )
    } else if fakes.busy(&device) {
        (
            503,
            json!({"error": {"code": 503, "status": "UNAVAILABLE"}}),
        )
    } else {
        (
            200,
            json!({"name": format!("projects/{project}/messages/1")}),
        )
    };
    fakes.record(Recorded {
        kind: "v1",
        path: format!("/v1/projects/{project}/messages:send"),
        http2: version == Version::HTTP_2,
        tls: over_tls.is_some(),
        client_cert: over_tls.as_ref().and_then(|t| t.client_cert.clone()),
        headers: headers_of(&headers),
        body,
        status,
        answer,
    })
}

async fn legacy(
    State(fakes): State<Arc<Fakes>>,
    version: Version,
    over_tls: Option<axum::Extension<OverTls>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let device = body["to"].as_str().unwrap_or("");
    let result = if device.contains("gone") {
        json!({"error": "NotRegistered"})
    } else {
        json!({"message_id": "0:1"})
    };
    let failed = u8::from(device.contains("gone"));
    fakes.record(Recorded {
        kind: "legacy",
        path: "/fcm/send".to_owned(),
        http2: version == Version::HTTP_2,
        tls: over_tls.is_some(),
        client_cert: over_tls.as_ref().and_then(|t| t.client_cert.clone()),
        headers: headers_of(&headers),
        body: body.clone(),
        status: 200,
        answer: json!({"multicast_id": 1, "success": 1 - failed, "failure": failed, "results": [result]}),
    })
}

/// The requests recorded so far that `wanted` picks.
pub fn requests(wanted: impl Fn(&Recorded) -> bool) -> Vec<Recorded> {
    fakes()
        .recorded
        .lock()
        .unwrap()
        .iter()
        .filter(|r| wanted(r))
        .cloned()
        .collect()
}

/// The device token a recorded send was for (`None` for token requests).
pub fn device_of(r: &Recorded) -> Option<String> {
    match r.kind {
        "apns" => r.path.strip_prefix("/3/device/").map(str::to_owned),
        "v1" => r.body["message"]["token"].as_str().map(str::to_owned),
        "legacy" => r.body["to"].as_str().map(str::to_owned),
        _ => None,
    }
}

/// Waits (up to 30 s: the whole e2e suite runs at once on a small machine) until at least
/// `n` sends to `device` are recorded, and returns them.
pub async fn sends_to(device: &str, n: usize) -> Vec<Recorded> {
    for _ in 0..600 {
        let found = requests(|r| device_of(r).as_deref() == Some(device));
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "fewer than {n} pushes reached {device}: {:?}",
        requests(|r| device_of(r).as_deref() == Some(device))
    );
}
