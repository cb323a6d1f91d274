//! Admission control: at most `max_in_flight` API requests are served at once. A request
//! that finds every slot taken waits for one, in turn, up to `wait`; at most `queue`
//! requests wait. The rest, and a request whose wait runs out, are answered 503 with
//! `Retry-After: 1`, so under overload the accepted requests keep their latency and memory
//! stays bounded, while a burst that lasts less than `wait` (a commit that took 30 ms, a
//! scheduler hiccup) is absorbed instead of refused. The queue must hold what arrives
//! during such a burst: at 2,700 requests/s, 50 ms is 135 requests, more than the slots.
//! Health, readiness and metrics are always served.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::{Error, ErrorCode};
use http::HeaderValue;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The slots of requests in flight, and the room to wait for one.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    waiting_room: Arc<Semaphore>,
    wait: Duration,
}

impl Admission {
    /// `max_in_flight` slots (at least one), and a queue of `queue` places to wait up to
    /// `wait` for one; both at most the semaphore's limit (the settings refuse more).
    pub(crate) fn new(max_in_flight: usize, queue: usize, wait: Duration) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(
                max_in_flight.clamp(1, Semaphore::MAX_PERMITS),
            )),
            waiting_room: Arc::new(Semaphore::new(queue.min(Semaphore::MAX_PERMITS))),
            wait,
        }
    }
}

/// Paths served whatever the load: probes and scrapes must see an overloaded gateway, and
/// `/faye` long-polls are held open for seconds on purpose (the real-time endpoint has
/// limits of its own).
fn always_served(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/faye")
}

/// Middleware: serves the request in a free slot (waiting up to `wait` for one), or answers
/// 503 with `Retry-After`.
pub(crate) async fn admit(
    State(admission): State<Admission>,
    request: Request,
    next: Next,
) -> Response {
    if always_served(request.uri().path()) {
        return next.run(request).await;
    }
    let slot = match admission.slots.clone().try_acquire_owned() {
        Ok(slot) => Some(slot),
        Err(_) => wait_for_slot(&admission).await,
    };
    let Some(_slot) = slot else {
        metrics::counter!("http_requests_shed_total").increment(1);
        let mut response = ApiError::from(Error::new(
            ErrorCode::Unavailable,
            "the server is at capacity; retry after the time in Retry-After",
        ))
        .into_response();
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    next.run(request).await
}

/// A slot that frees up within `wait`, if there is a wait and the waiting room has a place.
async fn wait_for_slot(admission: &Admission) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if admission.wait.is_zero() {
        return None;
    }
    // A queue of no places refuses at once too: `try_acquire` of a zero-permit semaphore
    // fails.
    let _place = admission.waiting_room.try_acquire().ok()?;
    metrics::counter!("http_requests_queued_total").increment(1);
    tokio::time::timeout(admission.wait, admission.slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tokio::sync::{mpsc, Notify};
    use tower::ServiceExt as _;

    use super::*;

    /// A router behind `admission` whose `/v1/slow` holds each request until `release` is
    /// notified, telling `entered` when one starts; `/healthz` answers at once.
    fn app(admission: Admission) -> (Router, mpsc::UnboundedReceiver<()>, Arc<Notify>) {
        let (entered_tx, entered) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let hold = release.clone();
        let app = Router::new()
            .route(
                "/v1/slow",
                get(move || {
                    let hold = hold.clone();
                    let _ = entered_tx.send(());
                    async move { hold.notified().await }
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(admission, admit));
        (app, entered, release)
    }

    fn request(path: &str) -> Request {
        Request::builder().uri(path).body(Body::empty()).unwrap()
    }

    async fn assert_shed(response: Response) {
        assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "service_unavailable", "{body}");
        // The bench tells posts shed here from other 503s by these words.
        assert!(body["error"]["description"]
            .as_str()
            .unwrap()
            .contains("at capacity"));
    }

    type Handle = tokio::task::JoinHandle<Result<Response, std::convert::Infallible>>;

    /// Sends one request that takes the only slot, then `waiting` that wait for it: their
    /// handles, once that many places of the queue are taken.
    async fn one_served_the_rest_waiting(
        app: &Router,
        admission: &Admission,
        entered: &mut mpsc::UnboundedReceiver<()>,
        waiting: usize,
    ) -> (Handle, Vec<Handle>) {
        let served = tokio::spawn(app.clone().oneshot(request("/v1/slow")));
        entered.recv().await.unwrap();
        let free = admission.waiting_room.available_permits();
        let handles = (0..waiting)
            .map(|_| tokio::spawn(app.clone().oneshot(request("/v1/slow"))))
            .collect();
        let queued = async {
            while admission.waiting_room.available_permits() > free.saturating_sub(waiting) {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), queued)
            .await
            .expect("the requests wait for the slot");
        (served, handles)
    }

    /// Lets the served request finish, then each waiting one through in turn: every one
    /// answered 200.
    async fn served_in_turn(
        entered: &mut mpsc::UnboundedReceiver<()>,
        release: &Notify,
        served: Handle,
        waiting: Vec<Handle>,
    ) {
        release.notify_one();
        assert_eq!(
            served.await.unwrap().unwrap().status(),
            http::StatusCode::OK
        );
        for handle in waiting {
            entered.recv().await.unwrap();
            release.notify_one();
            assert_eq!(
                handle.await.unwrap().unwrap().status(),
                http::StatusCode::OK
            );
        }
    }

    #[test]
    fn sizes_beyond_the_semaphore_s_limit_are_held_to_it_instead_of_panicking() {
        let admission = Admission::new(usize::MAX, usize::MAX, Duration::ZERO);
        assert_eq!(admission.slots.available_permits(), Semaphore::MAX_PERMITS);
        assert_eq!(
            admission.waiting_room.available_permits(),
            Semaphore::MAX_PERMITS
        );
        let none = Admission::new(0, 0, Duration::ZERO);
        assert_eq!(none.slots.available_permits(), 1);
        assert_eq!(none.waiting_room.available_permits(), 0);
    }

    #[tokio::test]
    async fn without_a_wait_the_excess_is_answered_503_at_once_and_probes_still_pass() {
        let admission = Admission::new(1, 1, Duration::ZERO);
        let (app, mut entered, release) = app(admission);
        let first = tokio::spawn(app.clone().oneshot(request("/v1/slow")));
        entered.recv().await.unwrap();
        assert_shed(app.clone().oneshot(request("/v1/slow")).await.unwrap()).await;
        let probe = app.clone().oneshot(request("/healthz")).await.unwrap();
        assert_eq!(probe.status(), http::StatusCode::OK);
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), http::StatusCode::OK);
        // The slot is free again.
        let again = tokio::spawn(app.oneshot(request("/v1/slow")));
        entered.recv().await.unwrap();
        release.notify_one();
        assert_eq!(again.await.unwrap().unwrap().status(), http::StatusCode::OK);
    }

    #[tokio::test]
    async fn a_request_that_finds_no_slot_is_served_when_one_frees_up_within_the_wait() {
        let admission = Admission::new(1, 1, Duration::from_secs(30));
        let (app, mut entered, release) = app(admission.clone());
        let (first, second) = one_served_the_rest_waiting(&app, &admission, &mut entered, 1).await;
        assert!(entered.try_recv().is_err(), "the second request waits");
        served_in_turn(&mut entered, &release, first, second).await;
        assert_eq!(admission.waiting_room.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_full_waiting_room_and_a_wait_that_runs_out_are_answered_503() {
        let admission = Admission::new(1, 1, Duration::from_millis(200));
        let (app, mut entered, release) = app(admission.clone());
        let (first, mut waiting) =
            one_served_the_rest_waiting(&app, &admission, &mut entered, 1).await;
        // The one place to wait is taken: the next request is refused at once.
        assert_shed(app.clone().oneshot(request("/v1/slow")).await.unwrap()).await;
        // The waiting one is refused when its wait runs out, the slot still taken.
        let waiting = waiting.pop().expect("one waiting request");
        assert_shed(waiting.await.unwrap().unwrap()).await;
        assert!(entered.try_recv().is_err(), "no refused request was served");
        assert_eq!(admission.waiting_room.available_permits(), 1);
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), http::StatusCode::OK);
    }

    #[tokio::test]
    async fn the_queue_holds_more_waiting_requests_than_there_are_slots() {
        let admission = Admission::new(1, 3, Duration::from_secs(30));
        let (app, mut entered, release) = app(admission.clone());
        let (served, waiting) =
            one_served_the_rest_waiting(&app, &admission, &mut entered, 3).await;
        // The fourth finds the queue full.
        assert_shed(app.clone().oneshot(request("/v1/slow")).await.unwrap()).await;
        served_in_turn(&mut entered, &release, served, waiting).await;
        assert_eq!(admission.waiting_room.available_permits(), 3);
    }

    #[tokio::test]
    async fn a_queue_of_no_places_refuses_the_excess_at_once_whatever_the_wait() {
        let admission = Admission::new(1, 0, Duration::from_secs(30));
        let (app, mut entered, release) = app(admission);
        let served = tokio::spawn(app.clone().oneshot(request("/v1/slow")));
        entered.recv().await.unwrap();
        assert_shed(app.clone().oneshot(request("/v1/slow")).await.unwrap()).await;
        release.notify_one();
        assert_eq!(
            served.await.unwrap().unwrap().status(),
            http::StatusCode::OK
        );
    }
}
