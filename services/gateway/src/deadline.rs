//! The body deadline: a client has `Config::body_timeout` from the start of its request to
//! send the whole body. A body that trickles in slower (slowloris) or stalls is cut off and
//! the request answered 408 in the error shape, so a slow client cannot hold a connection
//! and a handler forever. Requests without a body are not touched.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, HttpBody as _};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use domain::{Error, ErrorCode};
use futures::StreamExt as _;

use crate::error::ApiError;
use crate::AppState;

/// The error a body past its deadline fails with (what the handler's reader sees).
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within its deadline")]
struct BodyDeadlinePassed;

/// Middleware: gives the request body its deadline and answers 408 when it passed.
pub(crate) async fn body_deadline(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let timeout = state.config.body_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let passed = Arc::new(AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let flag = passed.clone();
    let stream = futures::stream::unfold(Some(body.into_data_stream()), move |inner| {
        let flag = flag.clone();
        async move {
            let mut inner = inner?;
            match tokio::time::timeout_at(deadline, inner.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(inner))),
                Ok(None) => None,
                Err(_) => {
                    flag.store(true, Ordering::Release);
                    Some((Err(axum::Error::new(BodyDeadlinePassed)), None))
                }
            }
        }
    });
    let response = next
        .run(Request::from_parts(parts, Body::from_stream(stream)))
        .await;
    if passed.load(Ordering::Acquire) {
        tracing::debug!(
            timeout_ms = timeout.as_millis() as u64,
            "request body too slow"
        );
        return ApiError(Error::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body was not received within {} s; send it faster or in a smaller request",
                timeout.as_secs_f64()
            ),
        ))
        .into_response();
    }
    response
}
