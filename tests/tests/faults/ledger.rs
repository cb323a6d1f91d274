//! The ledger: what clients were told, what Postgres stored and what webhook targets
//! received, checked against each other after the faults.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};
use sqlx::Row as _;

use crate::load::{Failure, Record, Tenant};
use crate::sink::Deliveries;

/// A message stored in Postgres for one of the test's apps.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) app_id: String,
    pub(crate) id: String,
    /// The `Idempotency-Key` the load put in its metadata (none for probes).
    pub(crate) key: Option<String>,
}

/// Every message stored for `apps`.
pub(crate) async fn stored(database_url: &str, apps: &[String]) -> Vec<Stored> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT app_id, id, metadata->>'k' AS k FROM conversations.messages
          WHERE app_id = ANY($1)",
    )
    .bind(apps)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|row| Stored {
            app_id: row.get("app_id"),
            id: row.get("id"),
            key: row.get("k"),
        })
        .collect()
}

/// The tenants' stored messages, read again every 250 ms until each has reached every
/// matching webhook of `sink` or `within` has passed.
pub(crate) async fn stored_once_delivered(
    database_url: &str,
    tenants: &[Tenant],
    sink: &crate::sink::Sink,
    within: std::time::Duration,
) -> Vec<Stored> {
    let apps: Vec<String> = tenants.iter().map(|t| t.app.id.clone()).collect();
    let start = std::time::Instant::now();
    let mut stored = self::stored(database_url, &apps).await;
    while !undelivered(tenants, &stored, &sink.deliveries()).is_empty() && start.elapsed() < within
    {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        stored = self::stored(database_url, &apps).await;
    }
    stored
}

/// Deliveries each stored message still lacks: `(webhook, message id)`.
pub(crate) fn undelivered(
    tenants: &[Tenant],
    stored: &[Stored],
    deliveries: &Deliveries,
) -> Vec<(String, String)> {
    let mut missing = Vec::new();
    for message in stored {
        let Some(tenant) = tenants.iter().find(|t| t.app.id == message.app_id) else {
            continue;
        };
        for hook in tenant.hooks.iter().filter(|h| h.matches_app_user) {
            let pair = (hook.name.clone(), message.id.clone());
            if !deliveries.contains_key(&pair) {
                missing.push(pair);
            }
        }
    }
    missing
}

/// The verdict: counts for the report and every violation found.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub(crate) figures: BTreeMap<&'static str, u64>,
    pub(crate) failures_by_kind: BTreeMap<String, u64>,
    pub(crate) violations: Vec<String>,
}

impl Verdict {
    fn add(&mut self, figure: &'static str, n: u64) {
        *self.figures.entry(figure).or_default() += n;
    }

    fn violate(&mut self, what: String) {
        if self.violations.len() < 50 {
            self.violations.push(what);
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "figures": self.figures,
            "failed_attempts": self.failures_by_kind,
            "violations": self.violations,
        })
    }
}

/// Checks the records, the stored messages and the deliveries against each other.
pub(crate) fn check(
    tenants: &[Tenant],
    records: &[Record],
    stored: &[Stored],
    deliveries: &Deliveries,
) -> Verdict {
    let mut verdict = Verdict::default();

    // What clients were told.
    for record in records {
        verdict.add("messages", 1);
        verdict.add("requests", u64::from(record.attempts));
        verdict.add("images", u64::from(record.image));
        for failure in &record.failures {
            let kind = match failure {
                Failure::Status(status, _) => status.to_string(),
                Failure::Connection => "connection error".to_owned(),
                Failure::Timeout => "timeout".to_owned(),
            };
            *verdict.failures_by_kind.entry(kind).or_default() += 1;
            match failure {
                // 503 (a service or the database unavailable) and 504 (a deadline) say
                // "retry"; a 500 would be an unexpected error, which a fault must not cause.
                Failure::Status(503 | 504, true) => {}
                Failure::Connection => {}
                Failure::Status(status, error_body) => verdict.violate(format!(
                    "key {}: answered {status} (error body: {error_body}); only 503 or 504 with an error body is expected under faults",
                    record.key
                )),
                Failure::Timeout => verdict.violate(format!(
                    "key {}: no answer within {} s",
                    record.key,
                    crate::load::REQUEST_TIMEOUT.as_secs()
                )),
            }
        }
        match &record.message_id {
            Some(_) => verdict.add("accepted", 1),
            None => verdict.violate(format!(
                "key {}: never accepted after {} attempts",
                record.key, record.attempts
            )),
        }
        if record.message_id.is_some() && record.attempts > 1 {
            verdict.add("accepted after a retry", 1);
        }
        if record.replayed {
            verdict.add("retries answered with the stored response", 1);
        }
    }

    // What Postgres stored: each key once, under the id its client was given.
    let mut by_key: HashMap<&str, Vec<&Stored>> = HashMap::new();
    for message in stored {
        verdict.add("stored", 1);
        if let Some(key) = &message.key {
            by_key.entry(key).or_default().push(message);
        }
    }
    for record in records {
        let copies = by_key.get(record.key.as_str()).map_or(0, Vec::len);
        if copies > 1 {
            verdict.add("duplicate messages", copies as u64 - 1);
            verdict.violate(format!("key {}: stored {copies} times", record.key));
        }
        match (&record.message_id, by_key.get(record.key.as_str())) {
            (Some(id), Some(found)) if found.iter().any(|m| &m.id == id) => {}
            (Some(id), _) => {
                verdict.add("messages lost", 1);
                verdict.violate(format!(
                    "key {}: accepted as {id} but not stored",
                    record.key
                ));
            }
            (None, Some(_)) => verdict.add("stored without an answer", 1),
            (None, None) => {}
        }
    }

    // What webhook targets received: every stored message at every matching webhook, each
    // duplicate under the same webhook-id; nothing at webhooks that do not match.
    let missing = undelivered(tenants, stored, deliveries);
    verdict.add("deliveries missing", missing.len() as u64);
    for (hook, id) in missing.iter().take(10) {
        verdict.violate(format!("message {id} never reached webhook {hook}"));
    }
    for ((hook, id), webhook_ids) in deliveries {
        let Some(tenant) = tenants
            .iter()
            .find(|t| t.hooks.iter().any(|h| &h.name == hook))
        else {
            continue;
        };
        let matches = tenant
            .hooks
            .iter()
            .any(|h| &h.name == hook && h.matches_app_user);
        if !matches {
            verdict.violate(format!(
                "message {id} reached {hook}, whose events do not match"
            ));
            continue;
        }
        verdict.add("deliveries", webhook_ids.len() as u64);
        verdict.add("duplicate deliveries", webhook_ids.len() as u64 - 1);
        if webhook_ids
            .iter()
            .any(|w| w.is_empty() || *w != webhook_ids[0])
        {
            verdict.violate(format!(
                "message {id} at {hook}: deliveries carry different webhook-ids {webhook_ids:?}"
            ));
        }
    }
    verdict
}
