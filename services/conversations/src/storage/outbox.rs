//! The outbox: events written in the same transaction as the change they describe, handed
//! to the relay once committed; and the relay's statements on the table ([`Outbox`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use bus::{Backlog, OutboxRow};
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor, PgPool};
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
    Ok(serialized_row(seq, event, event_json(event)?, trace))
}

/// `event` as the outbox stores it.
pub(super) fn event_json(event: &Event) -> sqlx::Result<String> {
    serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// The outbox row `seq` holding `event`, already serialized as `payload`.
pub(super) fn serialized_row(
    seq: i64,
    event: &Event,
    payload: String,
    trace: &HashMap<String, String>,
) -> OutboxRow {
    OutboxRow {
        seq,
        event_id: event.id.clone(),
        app_id: event.app_id.clone(),
        trigger: event.trigger.clone(),
        payload,
        created_at_s: event.created_at_ms.div_euclid(1000),
        traceparent: trace.get("traceparent").cloned(),
        tracestate: trace.get("tracestate").cloned(),
    }
}

/// `payload`, an event serialized without an unread count, with `unreadCount` set to
/// `count`: what serializing the event with that count writes, since `unread_count` is
/// the event's last field. A message write serializes its event once, for the statement
/// (which sets the count it made), and hands the relay this.
pub(super) fn with_unread_count(payload: &str, count: i64) -> String {
    let body = payload.strip_suffix('}').unwrap_or(payload);
    let mut out = String::with_capacity(payload.len() + 32);
    out.push_str(body);
    if !body.ends_with('{') {
        out.push(',');
    }
    // Writing to a `String` cannot fail.
    let _ = write!(out, "\"unreadCount\":{count}}}");
    out
}

/// Writes an event to the outbox; the row, for the relay once committed. The event is
/// serialized once, for the statement and the row.
pub(super) async fn insert_event(
    db: impl PgExecutor<'_>,
    event: &Event,
) -> sqlx::Result<OutboxRow> {
    let trace = telemetry::propagation::current_context_map();
    let payload = event_json(event)?;
    // Sent as text and cast by the statement, as the message write does.
    let seq: i64 = sqlx::query_scalar!(
        "INSERT INTO conversations.outbox (event_id, app_id, trigger, payload, trace_context)
         VALUES ($1, $2, $3, $4::text::jsonb, $5) RETURNING seq",
        &event.id,
        &event.app_id,
        &event.trigger,
        &payload,
        trace_json(&trace) as _,
    )
    .fetch_one(db)
    .await?;
    Ok(serialized_row(seq, event, payload, &trace))
}

/// Writes an event (a postback, say) to the outbox on its own.
pub(crate) async fn publish(pool: &PgPool, event: &Event) -> sqlx::Result<OutboxRow> {
    insert_event(pool, event).await
}

/// `conversations.outbox` as the relay reads and marks it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outbox;

impl bus::OutboxStore for Outbox {
    async fn claim(
        &self,
        conn: &mut PgConnection,
        limit: i64,
        min_age: Duration,
        skip: &[i64],
    ) -> sqlx::Result<Vec<OutboxRow>> {
        sqlx::query_as!(
            OutboxRow,
            r#"SELECT seq, event_id, app_id, trigger, payload::text AS "payload!",
                      extract(epoch FROM created_at)::bigint AS "created_at_s!",
                      trace_context->>'traceparent' AS traceparent,
                      trace_context->>'tracestate' AS tracestate
                 FROM conversations.outbox
                WHERE published_at IS NULL
                  AND created_at <= now() - make_interval(secs => $2)
                  AND seq <> ALL($3)
                ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED"#,
            limit,
            min_age.as_secs_f64(),
            skip,
        )
        .fetch_all(conn)
        .await
    }

    /// Commits asynchronously (`synchronous_commit` off for its own transaction): a mark
    /// that a database crash loses only makes the sweep publish its rows again, which
    /// at-least-once delivery with a stable event id allows, so it need not wait for a
    /// WAL flush of its own. The events themselves were committed synchronously with the
    /// change they describe.
    ///
    /// Planned on every call (not a prepared statement): a plan made while the table was
    /// small scans the whole table, and a prepared statement keeps its plan until the
    /// table is analyzed, which without autovacuum is never (a full `bench all` spent
    /// 30 ms per mark in such scans).
    async fn mark_published(&self, conn: &mut PgConnection, seqs: &[i64]) -> sqlx::Result<()> {
        sqlx::query!(
            "UPDATE conversations.outbox SET published_at = now()
               FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
              WHERE seq = ANY($1)",
            seqs,
        )
        .persistent(false)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn backlog(&self, conn: &mut PgConnection) -> sqlx::Result<Backlog> {
        // The partial index on unpublished rows keeps this cheap while the backlog is small.
        sqlx::query_as!(
            Backlog,
            r#"SELECT count(*) AS "rows!",
                      coalesce(extract(epoch FROM now() - min(created_at))::float8, 0)
                          AS "oldest_age_s!"
                 FROM conversations.outbox WHERE published_at IS NULL"#,
        )
        .fetch_one(conn)
        .await
    }

    async fn purge(
        &self,
        conn: &mut PgConnection,
        older_than: Duration,
        limit: i64,
    ) -> sqlx::Result<u64> {
        let done = sqlx::query!(
            "DELETE FROM conversations.outbox WHERE seq IN (
                 SELECT seq FROM (SELECT seq, published_at FROM conversations.outbox
                                   ORDER BY seq LIMIT $2) AS oldest
                  WHERE published_at < now() - make_interval(secs => $1))",
            older_than.as_secs_f64(),
            limit,
        )
        .execute(conn)
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_added_as_serializing_the_event_with_it_would() {
        let mut event: Event = serde_json::from_value(serde_json::json!({
            "version": 1,
            "id": "e1",
            "appId": "a1",
            "trigger": "message:appUser",
            "createdAtMs": 1,
            "appUser": {
                "_id": "u1",
                "signedUpAt": "2015-10-06T20:53:01.588Z",
                "properties": {"a}": "}"},
                "conversationStarted": true
            },
            "messages": [{
                "_id": "m1", "role": "appUser", "text": "{}", "type": "text",
                "authorId": "u1", "received": 1.5, "actions": [], "source": {"type": "api"}
            }]
        }))
        .expect("an event");
        let without = serde_json::to_string(&event).expect("serialized");
        event.unread_count = Some(7);
        assert_eq!(
            with_unread_count(&without, 7),
            serde_json::to_string(&event).expect("serialized")
        );
    }
}
