//! `GET /readyz`: whether this gateway can serve. 503 when a backing gRPC service is down;
//! 200 otherwise, with `"status": "degraded"` while Redis is down or revocations are not
//! being received (requests still succeed, slower, and rate limits are off).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// Whether this gateway can serve, and what it depends on.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Readiness {
    /// `ok`, `degraded` (serving without Redis or revocations) or `unavailable`.
    #[schema(example = "ok")]
    status: &'static str,
    /// `ok`, `down` or `disabled`.
    redis: &'static str,
    /// `listening` or `not listening`.
    revocations: &'static str,
    /// Each backing service: `ok` or `down`.
    services: BTreeMap<String, String>,
}

/// 503 when a backing gRPC service is down; 200 otherwise, `degraded` while Redis is down.
#[utoipa::path(
    get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready (perhaps degraded)", body = Readiness),
        (status = 503, description = "A backing service is down", body = Readiness),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let ((grpc_status, Json(health)), redis_ok) =
        tokio::join!(super::health::healthz(State(state.clone())), async {
            match &state.redis {
                Some(redis) => Some(redis.ping().await),
                None => None,
            }
        });
    let listening = state.credentials.is_listening();
    let redis = match redis_ok {
        None => "disabled",
        Some(true) => "ok",
        Some(false) => "down",
    };
    let (status, word) = if grpc_status != StatusCode::OK {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else if redis_ok == Some(true) && listening {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::OK, "degraded")
    };
    let body = Readiness {
        status: word,
        redis,
        revocations: if listening {
            "listening"
        } else {
            "not listening"
        },
        services: health.services,
    };
    (status, Json(body))
}
