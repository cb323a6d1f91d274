//! Post lanes (split roles): the gateway's posts go to the conversations role as messages on
//! one long-lived `PostLane.Posts` stream per replica, not as one unary call (one HTTP/2
//! stream, its headers, a task on each side) each. A replica runs a post as `PostMessage`
//! runs it and answers by the post's id.
//!
//! A lane is only a faster road to the same method: a post no lane takes (none is open, the
//! replica is stopping and hands the post back unrun) goes as a unary call. A post whose
//! lane broke after it was sent fails as a unary call cut off does (UNAVAILABLE): it may or
//! may not have been stored, and `Idempotency-Key` makes the retry safe.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use proto::v1 as pb;
use proto::v1::post_lane_client::PostLaneClient;
use tasks::Tasks;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Status;

/// The most posts sent in one stream message.
const BATCH: usize = 64;

/// How long a lane waits before it opens its stream again, at first and at most.
const REOPEN_FIRST: Duration = Duration::from_millis(100);
const REOPEN_MAX: Duration = Duration::from_secs(5);

/// How long a closing lane waits for the answers of the posts it sent.
const DRAIN: Duration = Duration::from_secs(10);

/// How a post sent to a lane came back.
#[derive(Debug)]
pub(crate) enum Sent {
    /// The replica's answer, or the failure of the lane it went on.
    Answered(Result<pb::PostMessageResponse, Status>),
    /// No lane ran it: here it is back, for a unary call.
    Declined(pb::PostMessageRequest),
}

/// A post waiting for its lane.
struct Outgoing {
    request: pb::PostMessageRequest,
    trace: HashMap<String, String>,
    answer: oneshot::Sender<Sent>,
}

/// One replica's lane, as posts see it.
struct Lane {
    key: String,
    /// True while its stream is open and takes posts.
    open: Arc<AtomicBool>,
    posts: mpsc::UnboundedSender<Outgoing>,
    stop: CancellationToken,
}

/// The lanes to every conversations replica a gateway knows; posts take the open ones in
/// turn.
#[derive(Default)]
pub(crate) struct PostLanes {
    lanes: RwLock<Vec<Lane>>,
    next: AtomicUsize,
}

impl PostLanes {
    /// Opens a lane over `channel` (a connection of its own to one replica, named `key`),
    /// kept open on `tasks` until [`PostLanes::remove`] or until the gateway has drained
    /// ([`Tasks::finished`]).
    pub(crate) fn add(&self, key: String, channel: Channel, tasks: &Tasks) {
        let (posts, queued) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicBool::new(false));
        let stop = tasks.finished().child_token();
        tasks.spawn(
            "post lane",
            run(
                key.clone(),
                PostLaneClient::new(channel),
                queued,
                open.clone(),
                stop.clone(),
            ),
        );
        let mut lanes = self.lanes.write().unwrap_or_else(|e| e.into_inner());
        lanes.push(Lane {
            key,
            open,
            posts,
            stop,
        });
    }

    /// Closes the lane named `key` (its replica is gone).
    pub(crate) fn remove(&self, key: &str) {
        let mut lanes = self.lanes.write().unwrap_or_else(|e| e.into_inner());
        lanes.retain(|lane| {
            let keep = lane.key != key;
            if !keep {
                lane.stop.cancel();
            }
            keep
        });
    }

    /// Queues `outgoing` on the next open lane; gives it back when no lane is open.
    fn send(&self, mut outgoing: Outgoing) -> Option<Outgoing> {
        let lanes = self.lanes.read().unwrap_or_else(|e| e.into_inner());
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..lanes.len() {
            let lane = &lanes[(start + i) % lanes.len()];
            if !lane.open.load(Ordering::Acquire) {
                continue;
            }
            match lane.posts.send(outgoing) {
                Ok(()) => return None,
                Err(mpsc::error::SendError(back)) => outgoing = back,
            }
        }
        Some(outgoing)
    }

    /// Sends `request` on the next open lane, with the trace context `trace`, and waits up
    /// to `timeout` for its answer.
    pub(crate) async fn post(
        &self,
        request: pb::PostMessageRequest,
        trace: HashMap<String, String>,
        timeout: Duration,
    ) -> Sent {
        let (answer, answered) = oneshot::channel();
        let outgoing = Outgoing {
            request,
            trace,
            answer,
        };
        if let Some(outgoing) = self.send(outgoing) {
            count("declined");
            return Sent::Declined(outgoing.request);
        }
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(sent)) => sent,
            Ok(Err(_)) => {
                count("broken");
                Sent::Answered(Err(Status::unavailable(
                    "the post lane to the conversations role closed",
                )))
            }
            Err(_) => {
                count("timeout");
                Sent::Answered(Err(Status::deadline_exceeded(format!(
                    "the conversations role did not answer the post within {} ms",
                    timeout.as_millis()
                ))))
            }
        }
    }
}

/// Counts a post by how its lane took it (`post_lane_posts_total`): `answered` by a
/// replica, `declined` (it went as a unary call), `broken` (the lane broke first) or
/// `timeout`. Each post is counted once.
fn count(outcome: &'static str) {
    metrics::counter!("post_lane_posts_total", "outcome" => outcome).increment(1);
}

/// Gives a waiting post its outcome, counted as `outcome`; a post whose caller stopped
/// waiting (it timed out, and was counted so) is not counted again.
fn settle(answer: oneshot::Sender<Sent>, sent: Sent, outcome: &'static str) {
    if answer.send(sent).is_ok() {
        count(outcome);
    }
}

/// Hands a post that reached a lane not taking posts back to its caller, for a unary call.
fn decline(post: Outgoing) {
    settle(post.answer, Sent::Declined(post.request), "declined");
}

/// Keeps one lane's stream open until `stop`: opens it, sends the queued posts, settles
/// their answers, and opens it again after it ends. While it is not open, posts that reach
/// it anyway are declined.
async fn run(
    key: String,
    mut client: PostLaneClient<Channel>,
    mut queued: mpsc::UnboundedReceiver<Outgoing>,
    open: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut next_id = 0;
    let mut wait = REOPEN_FIRST;
    while !stop.is_cancelled() {
        let (calls, outbound) = mpsc::channel::<pb::PostCalls>(16);
        let opening = client.posts(tokio_stream::wrappers::ReceiverStream::new(outbound));
        let opened = tokio::select! {
            () = stop.cancelled() => break,
            opened = decline_while(&mut queued, opening) => opened,
        };
        match opened {
            Ok(replies) => {
                tracing::debug!(replica = %key, "post lane open");
                wait = REOPEN_FIRST;
                open.store(true, Ordering::Release);
                serve(
                    replies.into_inner(),
                    calls,
                    &mut queued,
                    &mut next_id,
                    &open,
                    &stop,
                )
                .await;
                open.store(false, Ordering::Release);
                tracing::debug!(replica = %key, "post lane closed");
            }
            Err(status) => {
                tracing::debug!(replica = %key, %status, "opening a post lane failed; posts go as unary calls");
                wait = (wait * 2).min(REOPEN_MAX);
            }
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = decline_while(&mut queued, tokio::time::sleep(wait)) => {}
        }
    }
    open.store(false, Ordering::Release);
    queued.close();
    while let Some(post) = queued.recv().await {
        decline(post);
    }
}

/// Runs `work`, declining the posts that reach a lane that is not open meanwhile.
async fn decline_while<T>(
    queued: &mut mpsc::UnboundedReceiver<Outgoing>,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            Some(post) = queued.recv() => decline(post),
        }
    }
}

/// One open stream: sends queued posts in batches and settles their answers until the
/// stream ends. A replica that says it is stopping gets no more posts (the lane closes and
/// its side of the stream ends); what was sent and never answered fails as UNAVAILABLE.
async fn serve(
    mut replies: tonic::Streaming<pb::PostReplies>,
    calls: mpsc::Sender<pb::PostCalls>,
    queued: &mut mpsc::UnboundedReceiver<Outgoing>,
    next_id: &mut u64,
    open: &AtomicBool,
    stop: &CancellationToken,
) {
    let mut pending: HashMap<u64, oneshot::Sender<Sent>> = HashMap::new();
    let mut calls = Some(calls);
    let mut batch = Vec::with_capacity(BATCH);
    let mut stopping = false;
    let drained = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drained);
    loop {
        tokio::select! {
            () = stop.cancelled(), if !stopping => {
                // Send nothing more; wait a while for the answers of what was sent.
                stopping = true;
                open.store(false, Ordering::Release);
                calls = None;
                drained.as_mut().reset(tokio::time::Instant::now() + DRAIN);
            }
            () = &mut drained => break,
            n = queued.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                let Some(sender) = calls.as_ref() else {
                    batch.drain(..).for_each(decline);
                    continue;
                };
                let mut message = pb::PostCalls { calls: Vec::with_capacity(batch.len()) };
                for post in batch.drain(..) {
                    let id = *next_id;
                    *next_id += 1;
                    pending.insert(id, post.answer);
                    message.calls.push(pb::PostCall {
                        id,
                        request: Some(post.request),
                        trace: post.trace,
                    });
                }
                if let Err(mpsc::error::SendError(message)) = sender.send(message).await {
                    // The stream's sending side is gone: nothing of this batch was sent.
                    for call in message.calls {
                        if let (Some(answer), Some(request)) = (pending.remove(&call.id), call.request) {
                            settle(answer, Sent::Declined(request), "declined");
                        }
                    }
                    open.store(false, Ordering::Release);
                    calls = None;
                }
            }
            reply = replies.message() => match reply {
                Ok(Some(message)) => {
                    if message.stopping {
                        open.store(false, Ordering::Release);
                        calls = None;
                    }
                    for reply in message.replies {
                        let Some(answer) = pending.remove(&reply.id) else { continue };
                        let (sent, outcome) = match reply.outcome {
                            Some(pb::post_reply::Outcome::NotRun(request)) => (Sent::Declined(request), "declined"),
                            Some(pb::post_reply::Outcome::Response(response)) => (Sent::Answered(Ok(response)), "answered"),
                            Some(pb::post_reply::Outcome::Failure(failure)) => (Sent::Answered(Err(wire::from_post_failure(failure))), "answered"),
                            None => (Sent::Answered(Err(Status::internal("a post lane answer without an outcome"))), "answered"),
                        };
                        settle(answer, sent, outcome);
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(%status, "a post lane broke");
                    break;
                }
            },
        }
    }
    for (_, answer) in pending {
        let broke = Status::unavailable(
            "the post lane to the conversations role broke before the post was answered",
        );
        settle(answer, Sent::Answered(Err(broke)), "broken");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(app: &str) -> pb::PostMessageRequest {
        pb::PostMessageRequest {
            app_id: app.to_owned(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_post_no_open_lane_takes_comes_back_whole() {
        let lanes = PostLanes::default();
        match lanes
            .post(request("none"), HashMap::new(), Duration::from_secs(1))
            .await
        {
            Sent::Declined(back) => assert_eq!(back.app_id, "none"),
            Sent::Answered(answer) => panic!("answered without a lane: {answer:?}"),
        }
        // A lane to a replica that cannot be reached never opens: posts skip it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let tasks = Tasks::new(CancellationToken::new());
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        lanes.add(addr.to_string(), channel, &tasks);
        tokio::time::sleep(Duration::from_millis(200)).await;
        match lanes
            .post(request("closed"), HashMap::new(), Duration::from_secs(1))
            .await
        {
            Sent::Declined(back) => assert_eq!(back.app_id, "closed"),
            Sent::Answered(answer) => panic!("answered by a closed replica: {answer:?}"),
        }
        lanes.remove(&addr.to_string());
        tasks.finish(Ok(())).await.unwrap();
    }
}
