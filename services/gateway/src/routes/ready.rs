//! `GET /readyz`: whether this gateway can serve. 503 when a backing gRPC service is down;
//! 200 otherwise, with `"status": "degraded"` while Redis is down or revocations are not
//! being received (requests still succeed, slower, and rate limits are off).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
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
    let body = json!({
        "status": word,
        "redis": redis,
        "revocations": if listening { "listening" } else { "not listening" },
        "services": health["services"],
    });
    (status, Json(body))
}
