//! The post lane (split roles): the `PostLane` gRPC service, where a gateway in another
//! process sends its posts as messages on one long-lived stream instead of one unary call
//! each. Each post runs as `PostMessage` runs it: the same method, inside a `grpc.server`
//! span that continues the gateway's trace, counted in the same metrics, under the same
//! limit on its time. Its answer goes back on the stream by its id.
//!
//! A stopping replica tells the gateway (`stopping`), answers what it already runs, hands
//! back unrun the posts it reads afterwards, and ends the stream once the gateway has ended
//! its side, or after [`DRAIN`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use proto::v1 as pb;
use proto::v1::conversations_server::Conversations as _;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::grpc::ConversationsApi;

/// The method each post runs as, for its span and metrics.
const METHOD: &str = "/smooch.v1.Conversations/PostMessage";

/// The most posts of one stream running at once; the stream is read no further until one
/// ends (HTTP/2 flow control then holds the gateway back).
const IN_FLIGHT: usize = 256;

/// How long one post may run, as a unary call may on this role's server.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// How long a stopping replica waits for a gateway to end its side of the stream.
const DRAIN: Duration = Duration::from_secs(5);

/// The most answers sent in one stream message.
const BATCH: usize = 64;

/// The `PostLane` service of one conversations replica.
pub(crate) struct LaneApi {
    api: Arc<ConversationsApi>,
    shutdown: CancellationToken,
}

impl LaneApi {
    pub(crate) fn new(api: Arc<ConversationsApi>, shutdown: CancellationToken) -> Self {
        LaneApi { api, shutdown }
    }
}

/// What goes back on a stream: an answer, or `None` when the replica starts to stop.
type Back = Option<pb::PostReply>;

type ReplyStream = Pin<Box<dyn Stream<Item = Result<pb::PostReplies, Status>> + Send>>;

#[tonic::async_trait]
impl pb::post_lane_server::PostLane for LaneApi {
    type PostsStream = ReplyStream;

    async fn posts(
        &self,
        request: Request<Streaming<pb::PostCalls>>,
    ) -> Result<Response<ReplyStream>, Status> {
        if self.shutdown.is_cancelled() {
            return Err(Status::unavailable(
                "this conversations replica is stopping",
            ));
        }
        let (back, answers) = mpsc::unbounded_channel();
        tokio::spawn(read(
            request.into_inner(),
            back,
            self.api.clone(),
            self.shutdown.clone(),
        ));
        let stream = futures::stream::unfold(answers, |mut answers| async move {
            let mut batch = Vec::with_capacity(BATCH);
            if answers.recv_many(&mut batch, BATCH).await == 0 {
                return None;
            }
            let mut replies = pb::PostReplies::default();
            for back in batch {
                match back {
                    Some(reply) => replies.replies.push(reply),
                    None => replies.stopping = true,
                }
            }
            Some((Ok(replies), answers))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Reads a gateway's posts and runs each on a task of its own, until the gateway ends its
/// side (or the stream breaks, or the replica stops and [`DRAIN`] passes). The stream of
/// answers ends once the last running post has answered.
async fn read(
    mut calls: Streaming<pb::PostCalls>,
    back: mpsc::UnboundedSender<Back>,
    api: Arc<ConversationsApi>,
    shutdown: CancellationToken,
) {
    let room = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut stopping = false;
    let drained = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drained);
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled(), if !stopping => {
                stopping = true;
                let _ = back.send(None);
                drained.as_mut().reset(tokio::time::Instant::now() + DRAIN);
                continue;
            }
            () = &mut drained => break,
            next = calls.message() => next,
        };
        let batch = match next {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(%status, "a gateway's post lane broke");
                break;
            }
        };
        for call in batch.calls {
            let Some(request) = call.request else {
                let _ = back.send(Some(pb::PostReply {
                    id: call.id,
                    outcome: Some(pb::post_reply::Outcome::Failure(wire::to_post_failure(
                        &wire::status(domain::Error::bad_request("a post call carries no request")),
                    ))),
                }));
                continue;
            };
            if stopping {
                let _ = back.send(Some(pb::PostReply {
                    id: call.id,
                    outcome: Some(pb::post_reply::Outcome::NotRun(request)),
                }));
                continue;
            }
            let Ok(permit) = room.clone().acquire_owned().await else {
                break;
            };
            let api = api.clone();
            let back = back.clone();
            tokio::spawn(async move {
                let span = proto::local::server_span(METHOD);
                telemetry::propagation::set_parent_from_map(&span, &call.trace);
                let run = api.post_message(Request::new(request));
                let outcome = match proto::local::call_in(span, METHOD, RUN_LIMIT, run).await {
                    Ok(answer) => pb::post_reply::Outcome::Response(answer.into_inner()),
                    Err(status) => pb::post_reply::Outcome::Failure(wire::to_post_failure(&status)),
                };
                let _ = back.send(Some(pb::PostReply {
                    id: call.id,
                    outcome: Some(outcome),
                }));
                drop(permit);
            });
        }
    }
}
