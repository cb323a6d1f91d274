//! The outbox: events written in the same transaction as the change they describe, handed
//! to the relay once committed.

use std::collections::HashMap;

use bus::OutboxRow;
use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool};
use wire::event::Event;

/// The W3C trace context of the request writing an outbox row (`traceparent`,
/// `tracestate`, from `telemetry::propagation::current_context_map`), stored with the row
/// so the relay can hand it on to the bus and the event's delivery continues the request's
/// trace. `None` outside any trace.
pub(super) fn trace_json(
    context: &HashMap<String, String>,
) -> Option<Json<&HashMap<String, String>>> {
    (!context.is_empty()).then_some(Json(context))
}

/// The outbox row `seq` holding `event`, as the relay publishes it.
pub(super) fn outbox_row(
    seq: i64,
    event: &Event,
    trace: &HashMap<String, String>,
) -> sqlx::Result<OutboxRow> {
    Ok(OutboxRow {
        seq,
        event_id: event.id.clone(),
        app_id: event.app_id.clone(),
        trigger: event.trigger.clone(),
        payload: serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
        created_at_s: event.created_at_ms.div_euclid(1000),
        traceparent: trace.get("traceparent").cloned(),
        tracestate: trace.get("tracestate").cloned(),
    })
}

/// Writes an event to the outbox; the row, for the relay once committed.
pub(super) async fn insert_event(
    db: impl PgExecutor<'_>,
    event: &Event,
) -> sqlx::Result<OutboxRow> {
    let trace = telemetry::propagation::current_context_map();
    let seq: i64 = sqlx::query_scalar!(
        "INSERT INTO conversations.outbox (event_id, app_id, trigger, payload, trace_context)
         VALUES ($1, $2, $3, $4, $5) RETURNING seq",
        &event.id,
        &event.app_id,
        &event.trigger,
        Json(event) as _,
        trace_json(&trace) as _,
    )
    .fetch_one(db)
    .await?;
    outbox_row(seq, event, &trace)
}

/// Writes an event (a postback, say) to the outbox on its own.
pub(crate) async fn publish(pool: &PgPool, event: &Event) -> sqlx::Result<OutboxRow> {
    insert_event(pool, event).await
}
