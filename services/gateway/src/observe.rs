//! Request telemetry of the gateway: one span per HTTP request (continuing the client's
//! `traceparent` when it sends one), request counts and latency by route and status, and
//! the Prometheus `/metrics` page.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;
use tracing::Instrument as _;

/// Middleware: traces and measures every request.
pub(crate) async fn trace_requests(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    // The route template, not the path: ids must not explode the metric's cardinality.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!(
        "http.server",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    telemetry::propagation::set_parent_from_headers(&span, request.headers());
    let trace_id = telemetry::propagation::trace_id(&span);
    span.record("trace_id", trace_id.as_str());
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    // Lets a client quote the trace of a failed call to the operator.
    if let Ok(value) = http::HeaderValue::from_str(&trace_id) {
        response.headers_mut().insert("x-trace-id", value);
    }
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let elapsed = started.elapsed().as_secs_f64();
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed);
    response
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(
    get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub(crate) async fn metrics_page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        telemetry::metrics::render(),
    )
        .into_response()
}
