//! `GET /healthz`: 200 once every backing gRPC service answers its health check.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use utoipa::ToSchema;

use crate::AppState;

/// The health of the gateway's backing services.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`, or `degraded` when a service is down.
    #[schema(example = "ok")]
    pub(crate) status: &'static str,
    /// Each backing service: `ok` or `down`.
    pub(crate) services: BTreeMap<String, String>,
}

/// 200 once every backing gRPC service answers its health check, else 503.
#[utoipa::path(
    get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses(
        (status = 200, description = "Every role serves", body = Health),
        (status = 503, description = "A backing service is down", body = Health),
    )
)]
pub(crate) async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
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
    let services = results
        .into_iter()
        .map(|(name, ok)| (name.to_owned(), if ok { "ok" } else { "down" }.to_owned()))
        .collect();
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if all_ok { "ok" } else { "degraded" },
        services,
    };
    (status, Json(body))
}
