//! One HTTP delivery attempt: the POST, its headers and signature, and what came back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, USER_AGENT};

use crate::signature;
use crate::target_guard::{self, PublicOnlyResolver};

/// At most this much of a response body is read (and then dropped): receivers only need
/// to answer with a status.
const MAX_RESPONSE_BYTES: usize = 16 * 1024;

/// What one attempt came to.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// The response status, when a response came.
    pub(crate) status_code: Option<u16>,
    /// Why the attempt failed without (or despite) a response.
    pub(crate) error: Option<String>,
    /// From sending to the end of the (limited) response body.
    pub(crate) latency: Duration,
}

impl Outcome {
    /// A 2xx answer.
    pub(crate) fn succeeded(&self) -> bool {
        self.error.is_none() && self.status_code.is_some_and(|c| (200..300).contains(&c))
    }
}

/// What to send, already signed-for.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) target: &'a str,
    pub(crate) secret: &'a str,
    pub(crate) delivery_id: &'a str,
    pub(crate) body: &'a [u8],
}

/// The HTTP client of the worker: no redirects, no proxies, bounded time and response
/// size, and (unless private targets are allowed) only public addresses.
#[derive(Debug, Clone)]
pub(crate) struct Sender {
    client: reqwest::Client,
    allow_private: bool,
    timeout: Duration,
}

impl Sender {
    pub(crate) fn new(timeout: Duration, allow_private: bool) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(30));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        Ok(Sender {
            client: builder.build()?,
            allow_private,
            timeout,
        })
    }

    /// Makes one attempt.
    pub(crate) async fn send(&self, req: &Request<'_>) -> Outcome {
        let started = Instant::now();
        let failed = |error: String| Outcome {
            status_code: None,
            error: Some(error),
            latency: started.elapsed(),
        };
        let url = match reqwest::Url::parse(req.target) {
            Ok(url) => url,
            Err(e) => return failed(format!("target is not a valid URL: {e}")),
        };
        if let Err(e) = target_guard::check_target(&url, self.allow_private) {
            return failed(e);
        }
        let timestamp = domain::time::now_ms() / 1000;
        let headers = match headers(req, timestamp) {
            Ok(h) => h,
            Err(e) => return failed(e),
        };
        let sent = self
            .client
            .post(url)
            .headers(headers)
            .body(req.body.to_vec())
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return failed(describe(&e, self.timeout)),
        };
        let status = response.status().as_u16();
        // Read (a bounded part of) the body so the connection can be reused.
        let mut read = 0usize;
        let mut error = None;
        while read < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) => break,
                Err(e) => {
                    error = Some(describe(&e, self.timeout));
                    break;
                }
            }
        }
        Outcome {
            status_code: Some(status),
            error: error.or_else(|| {
                (!(200..300).contains(&status)).then(|| format!("target answered {status}"))
            }),
            latency: started.elapsed(),
        }
    }
}

fn headers(req: &Request<'_>, timestamp: i64) -> Result<HeaderMap, String> {
    let value = |s: &str| {
        HeaderValue::from_str(s).map_err(|_| "header value is not valid ASCII".to_owned())
    };
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(USER_AGENT, HeaderValue::from_static("smooch-webhooks/1"));
    h.insert("x-api-key", value(req.secret)?);
    h.insert("webhook-id", value(req.delivery_id)?);
    h.insert("webhook-timestamp", value(&timestamp.to_string())?);
    // The delivery attempt's trace (that of the request that caused the event), so
    // receivers that trace can join it. Unsigned and advisory.
    telemetry::propagation::inject_headers(&mut h);
    h.insert(
        "webhook-signature",
        value(&signature::sign(
            req.secret,
            req.delivery_id,
            timestamp,
            req.body,
        ))?,
    );
    Ok(h)
}

/// A short description of a transport error, with its causes.
fn describe(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("timed out after {} ms", timeout.as_millis());
    }
    let mut text = if err.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
