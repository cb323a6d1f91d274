//! Admission control: at most `max_in_flight` API requests are served at once; the excess is
//! answered at once with 503 and `Retry-After: 1` instead of queueing, so under overload
//! the accepted requests keep their latency and memory stays bounded. Health, readiness and
//! metrics are always served.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::{Error, ErrorCode};
use http::HeaderValue;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The slots of requests in flight.
#[derive(Debug, Clone)]
pub(crate) struct Admission(Arc<Semaphore>);

impl Admission {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Admission(Arc::new(Semaphore::new(max_in_flight.max(1))))
    }
}

/// Paths served whatever the load: probes and scrapes must see an overloaded gateway, and
/// `/faye` long-polls are held open for seconds on purpose (the real-time endpoint has
/// limits of its own).
fn always_served(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/faye")
}

/// Middleware: serves the request in a free slot, or answers 503 with `Retry-After`.
pub(crate) async fn admit(
    State(admission): State<Admission>,
    request: Request,
    next: Next,
) -> Response {
    if always_served(request.uri().path()) {
        return next.run(request).await;
    }
    let Ok(_slot) = admission.0.clone().try_acquire_owned() else {
        metrics::counter!("http_requests_shed_total").increment(1);
        let mut response = ApiError::from(Error::new(
            ErrorCode::Unavailable,
            "the server is at capacity; retry after the time in Retry-After",
        ))
        .into_response();
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn the_excess_is_answered_503_with_retry_after_and_probes_still_pass() {
        let admission = Admission::new(1);
        let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
        let entered_tx = Arc::new(std::sync::Mutex::new(Some(entered_tx)));
        let release = Arc::new(tokio::sync::Notify::new());
        let hold = release.clone();
        let app = Router::new()
            .route(
                "/v1/slow",
                get(move || {
                    let hold = hold.clone();
                    let entered_tx = entered_tx.clone();
                    if let Some(tx) = entered_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    async move { hold.notified().await }
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(admission, admit));
        let request = |path: &str| Request::builder().uri(path).body(Body::empty()).unwrap();
        let first = tokio::spawn(app.clone().oneshot(request("/v1/slow")));
        entered_rx.await.unwrap();
        let shed = app.clone().oneshot(request("/v1/slow")).await.unwrap();
        assert_eq!(shed.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[http::header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(shed.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(body["error"]["description"]
            .as_str()
            .unwrap()
            .contains("capacity"));
        let probe = app.clone().oneshot(request("/healthz")).await.unwrap();
        assert_eq!(probe.status(), http::StatusCode::OK);
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), http::StatusCode::OK);
        let again = app.oneshot(request("/v1/slow"));
        let waker = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            release.notify_one();
        });
        assert_eq!(again.await.unwrap().status(), http::StatusCode::OK);
        waker.await.unwrap();
    }
}
