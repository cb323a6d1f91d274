//! `GET /healthz`: 200 once every backing gRPC service answers its health check.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::AppState;

pub(crate) async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let checks = state.clients.channels.iter().map(|(name, channel)| {
        let mut client = HealthClient::new(channel.clone());
        async move {
            let ok = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                client.check(HealthCheckRequest {
                    service: String::new(),
                }),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .is_some_and(|r| r.get_ref().status == ServingStatus::Serving as i32);
            (*name, ok)
        }
    });
    let results = futures::future::join_all(checks).await;
    let all_ok = results.iter().all(|(_, ok)| *ok);
    let services: Map<String, Value> = results
        .into_iter()
        .map(|(name, ok)| (name.to_owned(), json!(if ok { "ok" } else { "down" })))
        .collect();
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"status": if all_ok { "ok" } else { "degraded" }, "services": services});
    (status, Json(body))
}
