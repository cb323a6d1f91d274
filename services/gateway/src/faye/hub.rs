//! The subscriptions of this replica's Bayeux clients, and delivery to them: sessions keyed
//! by `clientId`, each with its queue of undelivered messages, and an index from an app
//! user's channels to the sessions subscribed to them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Notify;

/// Which of an app user's channels a subscription is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// `/v1/users/{appUserId}`: user changes.
    User,
    /// `/v1/conversations/{conversationId}`: messages.
    Conversation,
    /// `/v1/conversations/{conversationId}/activity`: typing.
    Activity,
}

/// Limits of the hub, read from the `SMOOCH_FAYE_*` variables.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Subscriptions one client may hold. Default 32
    /// (`SMOOCH_FAYE_MAX_SUBSCRIPTIONS_PER_CLIENT`).
    #[serde(rename = "faye_max_subscriptions_per_client")]
    pub per_client: usize,
    /// Subscriptions all clients of one app may hold on this replica. Default 100,000
    /// (`SMOOCH_FAYE_MAX_SUBSCRIPTIONS_PER_APP`).
    #[serde(rename = "faye_max_subscriptions_per_app")]
    pub per_app: usize,
    /// Messages waiting for one client; a client that falls further behind is dropped.
    /// Default 1,000 (`SMOOCH_FAYE_MAX_QUEUED`).
    #[serde(rename = "faye_max_queued")]
    pub queue: usize,
    /// How long a `/meta/connect` is held open when there is nothing to deliver. Default
    /// 25 s (`SMOOCH_FAYE_POLL_TIMEOUT_MS`).
    #[serde(rename = "faye_poll_timeout_ms", with = "domain::config::millis")]
    pub poll_timeout: Duration,
    /// How long a client may go without polling before it is forgotten. Default 60 s
    /// (`SMOOCH_FAYE_CLIENT_EXPIRY_MS`).
    #[serde(rename = "faye_client_expiry_ms", with = "domain::config::millis")]
    pub client_expiry: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_client: 32,
            per_app: 100_000,
            queue: 1_000,
            poll_timeout: Duration::from_secs(25),
            client_expiry: Duration::from_secs(60),
        }
    }
}

/// One subscription: the channel name the client used and whose channel it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    pub(crate) app_id: String,
    pub(crate) app_user_id: String,
    pub(crate) kind: Kind,
}

struct Session {
    subs: HashMap<String, Target>,
    /// The credentials its subscriptions were granted with, checked again on every
    /// `/meta/connect` so a revoked key or app token ends them.
    credentials: Vec<auth::Credential>,
    queue: VecDeque<Value>,
    notify: Arc<Notify>,
    last_seen: Instant,
    /// Whether a `/meta/connect` is being held for this client.
    polling: bool,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    /// Subscribers of each target: `(clientId, channel)`.
    index: HashMap<Target, HashSet<(String, String)>>,
    per_app: HashMap<String, usize>,
}

/// Why a subscription was refused by the hub.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SubscribeError {
    UnknownClient,
    TooMany(&'static str),
}

/// The clients of this replica.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Mutex<Inner>>,
    pub(crate) limits: Arc<Limits>,
}

impl Hub {
    /// An empty hub.
    pub fn new(limits: Limits) -> Self {
        Hub {
            inner: Arc::default(),
            limits: Arc::new(limits),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent maps: keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new client; returns its id.
    pub(crate) fn handshake(&self) -> String {
        let id = domain::id::new_id();
        let mut inner = self.lock();
        inner.sessions.insert(
            id.clone(),
            Session {
                subs: HashMap::new(),
                credentials: Vec::new(),
                queue: VecDeque::new(),
                notify: Arc::new(Notify::new()),
                last_seen: Instant::now(),
                polling: false,
            },
        );
        metrics::gauge!("faye_clients").set(inner.sessions.len() as f64);
        metrics::counter!("faye_handshakes_total").increment(1);
        id
    }

    /// Whether `client_id` is known (and marks it seen).
    pub(crate) fn touch(&self, client_id: &str) -> bool {
        let mut inner = self.lock();
        match inner.sessions.get_mut(client_id) {
            Some(s) => {
                s.last_seen = Instant::now();
                true
            }
            None => false,
        }
    }

    /// Records a subscription of `client_id` to `channel`.
    pub(crate) fn subscribe(
        &self,
        client_id: &str,
        channel: &str,
        target: Target,
    ) -> Result<(), SubscribeError> {
        let mut inner = self.lock();
        let per_app = inner.per_app.get(&target.app_id).copied().unwrap_or(0);
        let session = inner
            .sessions
            .get_mut(client_id)
            .ok_or(SubscribeError::UnknownClient)?;
        if session.subs.contains_key(channel) {
            return Ok(());
        }
        if session.subs.len() >= self.limits.per_client {
            return Err(SubscribeError::TooMany("this client"));
        }
        if per_app >= self.limits.per_app {
            return Err(SubscribeError::TooMany("this app"));
        }
        session.subs.insert(channel.to_owned(), target.clone());
        *inner.per_app.entry(target.app_id.clone()).or_default() += 1;
        inner
            .index
            .entry(target)
            .or_default()
            .insert((client_id.to_owned(), channel.to_owned()));
        metrics::gauge!("faye_subscriptions").increment(1.0);
        Ok(())
    }

    /// Records that a subscription of `client_id` was granted with `credential`.
    pub(crate) fn remember_credential(&self, client_id: &str, credential: auth::Credential) {
        let mut inner = self.lock();
        if let Some(session) = inner.sessions.get_mut(client_id) {
            if !session.credentials.contains(&credential) {
                session.credentials.push(credential);
            }
        }
    }

    /// The credentials `client_id`'s subscriptions were granted with.
    pub(crate) fn credentials(&self, client_id: &str) -> Vec<auth::Credential> {
        self.lock()
            .sessions
            .get(client_id)
            .map(|s| s.credentials.clone())
            .unwrap_or_default()
    }

    /// The app users whose conversation `client_id` is subscribed to: `(appId, appUserId)`.
    pub(crate) fn watched(&self, client_id: &str) -> Vec<(String, String)> {
        let inner = self.lock();
        let Some(session) = inner.sessions.get(client_id) else {
            return Vec::new();
        };
        let mut watched: Vec<(String, String)> = session
            .subs
            .values()
            .filter(|t| t.kind == Kind::Conversation)
            .map(|t| (t.app_id.clone(), t.app_user_id.clone()))
            .collect();
        watched.sort();
        watched.dedup();
        watched
    }

    /// Removes a subscription; false when the client is unknown.
    pub(crate) fn unsubscribe(&self, client_id: &str, channel: &str) -> bool {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(client_id) else {
            return false;
        };
        if let Some(target) = session.subs.remove(channel) {
            unindex(&mut inner, client_id, channel, &target);
        }
        true
    }

    /// Forgets a client and its subscriptions.
    pub(crate) fn disconnect(&self, client_id: &str) -> bool {
        let mut inner = self.lock();
        let removed = remove_session(&mut inner, client_id);
        metrics::gauge!("faye_clients").set(inner.sessions.len() as f64);
        removed
    }

    /// The apps some client of this replica subscribed to a channel of.
    pub(crate) fn watched_apps(&self) -> Vec<String> {
        self.lock().per_app.keys().cloned().collect()
    }

    /// Whether any client of this replica subscribed to a channel of `app_id`: events of
    /// other apps need not even be parsed.
    pub(crate) fn watches_app(&self, app_id: &str) -> bool {
        self.lock().per_app.get(app_id).is_some_and(|n| *n > 0)
    }

    /// Delivers `data` on every channel of `target` that clients subscribed to; returns how
    /// many clients it was queued for. A client whose queue is full is dropped.
    pub(crate) fn publish(&self, target: &Target, data: &Value) -> usize {
        let mut inner = self.lock();
        let Some(subscribers) = inner.index.get(target).cloned() else {
            return 0;
        };
        let mut queued = 0;
        let mut overflowed = Vec::new();
        for (client_id, channel) in subscribers {
            let Some(session) = inner.sessions.get_mut(&client_id) else {
                continue;
            };
            if session.queue.len() >= self.limits.queue {
                overflowed.push(client_id);
                continue;
            }
            session.queue.push_back(json!({
                "channel": channel,
                "data": data,
                "id": domain::id::new_id(),
            }));
            session.notify.notify_one();
            queued += 1;
        }
        for client_id in overflowed {
            tracing::info!(client_id, "dropping a Bayeux client that fell behind");
            metrics::counter!("faye_clients_dropped_total", "reason" => "slow").increment(1);
            remove_session(&mut inner, &client_id);
        }
        metrics::counter!("faye_messages_published_total").increment(queued as u64);
        queued
    }

    /// Waits until `client_id` has messages or `timeout` passes, then takes them. `None`
    /// when the client is unknown (or was dropped meanwhile).
    pub(crate) async fn poll(&self, client_id: &str, timeout: Duration) -> Option<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notify = {
                let mut inner = self.lock();
                let session = inner.sessions.get_mut(client_id)?;
                session.last_seen = Instant::now();
                if !session.queue.is_empty() || tokio::time::Instant::now() >= deadline {
                    session.polling = false;
                    return Some(session.queue.drain(..).collect());
                }
                session.polling = true;
                session.notify.clone()
            };
            // A notification sent between the unlock and this wait is kept by `Notify`.
            if tokio::time::timeout_at(deadline, notify.notified())
                .await
                .is_err()
            {
                let mut inner = self.lock();
                let session = inner.sessions.get_mut(client_id)?;
                session.polling = false;
                session.last_seen = Instant::now();
                return Some(session.queue.drain(..).collect());
            }
        }
    }

    /// Forgets clients that have not polled within the expiry (and are not polling now).
    pub(crate) fn expire(&self) -> usize {
        let expiry = self.limits.client_expiry;
        let mut inner = self.lock();
        let stale: Vec<String> = inner
            .sessions
            .iter()
            .filter(|(_, s)| !s.polling && s.last_seen.elapsed() > expiry)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            remove_session(&mut inner, id);
        }
        metrics::gauge!("faye_clients").set(inner.sessions.len() as f64);
        if !stale.is_empty() {
            metrics::counter!("faye_clients_dropped_total", "reason" => "expired")
                .increment(stale.len() as u64);
        }
        stale.len()
    }

    /// Clients currently known.
    pub fn clients(&self) -> usize {
        self.lock().sessions.len()
    }
}

fn unindex(inner: &mut Inner, client_id: &str, channel: &str, target: &Target) {
    if let Some(set) = inner.index.get_mut(target) {
        set.remove(&(client_id.to_owned(), channel.to_owned()));
        if set.is_empty() {
            inner.index.remove(target);
        }
    }
    if let Some(n) = inner.per_app.get_mut(&target.app_id) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            inner.per_app.remove(&target.app_id);
        }
    }
    metrics::gauge!("faye_subscriptions").decrement(1.0);
}

fn remove_session(inner: &mut Inner, client_id: &str) -> bool {
    let Some(session) = inner.sessions.remove(client_id) else {
        return false;
    };
    for (channel, target) in &session.subs {
        unindex(inner, client_id, channel, target);
    }
    // Wakes a held connect, which then finds the client gone.
    session.notify.notify_one();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(app: &str, user: &str, kind: Kind) -> Target {
        Target {
            app_id: app.into(),
            app_user_id: user.into(),
            kind,
        }
    }

    #[tokio::test]
    async fn publishes_only_to_subscribers_of_the_target() {
        let hub = Hub::new(Limits::default());
        let a = hub.handshake();
        let b = hub.handshake();
        let t = target("app1", "u1", Kind::Conversation);
        hub.subscribe(&a, "/v1/conversations/c1", t.clone())
            .unwrap();
        hub.subscribe(&b, "/v1/users/u2", target("app1", "u2", Kind::User))
            .unwrap();
        assert_eq!(hub.publish(&t, &json!({"text": "hi"})), 1);
        assert_eq!(
            hub.publish(&target("app2", "u1", Kind::Conversation), &json!({})),
            0
        );
        let got = hub.poll(&a, Duration::from_millis(10)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["channel"], "/v1/conversations/c1");
        assert_eq!(got[0]["data"]["text"], "hi");
        assert!(hub
            .poll(&b, Duration::from_millis(10))
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_held_poll_wakes_on_publish() {
        let hub = Hub::new(Limits::default());
        let a = hub.handshake();
        let t = target("app1", "u1", Kind::Activity);
        hub.subscribe(&a, "/v1/conversations/c1/activity", t.clone())
            .unwrap();
        let waiting = {
            let hub = hub.clone();
            let a = a.clone();
            tokio::spawn(async move { hub.poll(&a, Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        hub.publish(&t, &json!({"activity": "typing:start"}));
        let got = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got[0]["data"]["activity"], "typing:start");
    }

    #[tokio::test]
    async fn limits_and_slow_clients() {
        let hub = Hub::new(Limits {
            per_client: 1,
            per_app: 2,
            queue: 2,
            ..Limits::default()
        });
        let a = hub.handshake();
        let b = hub.handshake();
        let c = hub.handshake();
        hub.subscribe(&a, "/v1/users/u1", target("app", "u1", Kind::User))
            .unwrap();
        assert_eq!(
            hub.subscribe(&a, "/v1/users/u2", target("app", "u2", Kind::User)),
            Err(SubscribeError::TooMany("this client"))
        );
        hub.subscribe(&b, "/v1/users/u1", target("app", "u1", Kind::User))
            .unwrap();
        assert_eq!(
            hub.subscribe(&c, "/v1/users/u1", target("app", "u1", Kind::User)),
            Err(SubscribeError::TooMany("this app"))
        );
        assert_eq!(
            hub.subscribe("nobody", "/v1/users/u1", target("x", "u1", Kind::User)),
            Err(SubscribeError::UnknownClient)
        );
        let t = target("app", "u1", Kind::User);
        for _ in 0..2 {
            assert_eq!(hub.publish(&t, &json!({})), 2);
        }
        // Both queues are full: the next publish drops both clients, not the server.
        assert_eq!(hub.publish(&t, &json!({})), 0);
        assert!(!hub.touch(&a));
        assert!(hub.poll(&b, Duration::from_millis(1)).await.is_none());
        assert_eq!(hub.clients(), 1);
        // Their subscriptions went with them: the app's count is free again.
        hub.subscribe(&c, "/v1/users/u1", t).unwrap();
    }

    #[tokio::test]
    async fn idle_clients_expire() {
        let hub = Hub::new(Limits {
            client_expiry: Duration::from_millis(20),
            ..Limits::default()
        });
        let a = hub.handshake();
        let b = hub.handshake();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(hub.touch(&b));
        assert_eq!(hub.expire(), 1);
        assert!(!hub.touch(&a));
        assert!(hub.touch(&b));
    }
}
