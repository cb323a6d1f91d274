//! The post lane: a gateway's posts as messages on one `PostLane.Posts` stream, spoken as the
//! gateway's lane speaks it, against a replica on the test database. Each post answers by
//! its id as `PostMessage` answers it; a stopping replica says so and hands back, unrun,
//! the posts it reads afterwards.

use std::collections::HashMap;
use std::time::Duration;

use proto::v1 as pb;
use proto::v1::post_lane_client::PostLaneClient;
use proto::v1::post_reply::Outcome;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;

use crate::helpers::{new_message, post_request, start, TestApp};

/// One open lane: what sends posts on it, and its answers.
struct Lane {
    calls: mpsc::UnboundedSender<pb::PostCalls>,
    replies: Streaming<pb::PostReplies>,
}

impl Lane {
    async fn open(addr: &str) -> Lane {
        let mut client = PostLaneClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (calls, queued) = mpsc::unbounded_channel();
        let replies = client
            .posts(UnboundedReceiverStream::new(queued))
            .await
            .unwrap()
            .into_inner();
        Lane { calls, replies }
    }

    /// Sends `calls` in one stream message.
    fn send(&self, calls: Vec<pb::PostCall>) {
        self.calls.send(pb::PostCalls { calls }).unwrap();
    }

    /// Reads until `n` answers came: the answers by id, and whether the replica said it
    /// stops.
    async fn read(&mut self, n: usize) -> (HashMap<u64, Outcome>, bool) {
        self.read_until(|answers, _| answers.len() >= n).await
    }

    /// Reads until the replica says it stops: the answers that came meanwhile.
    async fn until_stopping(&mut self) -> HashMap<u64, Outcome> {
        self.read_until(|_, stopping| stopping).await.0
    }

    /// Reads stream messages until `done` says so of the answers and the stopping mark.
    async fn read_until(
        &mut self,
        done: impl Fn(&HashMap<u64, Outcome>, bool) -> bool,
    ) -> (HashMap<u64, Outcome>, bool) {
        let mut answers = HashMap::new();
        let mut stopping = false;
        while !done(&answers, stopping) {
            let replies = tokio::time::timeout(Duration::from_secs(10), self.replies.message())
                .await
                .expect("the lane answers within 10 s")
                .unwrap()
                .expect("the lane is still open");
            stopping |= replies.stopping;
            for reply in replies.replies {
                let outcome = reply.outcome.expect("every answer has an outcome");
                assert!(
                    answers.insert(reply.id, outcome).is_none(),
                    "one answer per id"
                );
            }
        }
        (answers, stopping)
    }
}

fn call(id: u64, request: Option<pb::PostMessageRequest>) -> pb::PostCall {
    pb::PostCall {
        id,
        request,
        trace: HashMap::from([(
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        )]),
    }
}

fn texts(conversation: &pb::Conversation) -> Vec<&str> {
    conversation
        .messages
        .iter()
        .map(|m| m.text.as_str())
        .collect()
}

#[tokio::test]
async fn posts_on_a_lane_answer_by_id_as_post_message_answers_them() {
    let (addr, shutdown) = start(2).await;
    let _stop = shutdown.drop_guard();
    let mut app = TestApp::at(&addr).await;
    let mut other = TestApp::at(&addr).await;
    let mut lane = Lane::open(&addr).await;

    let hello = post_request(&app.app_id, "user1", new_message("appUser", "hello"));
    let blank = post_request(&app.app_id, "user1", new_message("appUser", "  "));
    let elsewhere = post_request(&other.app_id, "user1", new_message("appUser", "other app"));
    lane.send(vec![
        call(7, Some(hello)),
        call(8, None),
        call(9, Some(blank)),
        call(10, Some(elsewhere)),
    ]);
    let (answers, stopping) = lane.read(4).await;
    assert!(!stopping);

    let Outcome::Response(posted) = &answers[&7] else {
        panic!("post 7 was answered {:?}", answers[&7]);
    };
    assert!(posted.conversation_created);
    assert_eq!(posted.message.as_ref().unwrap().text, "hello");
    assert_eq!(texts(posted.conversation.as_ref().unwrap()), ["hello"]);

    let failure = |id: u64| match &answers[&id] {
        Outcome::Failure(failure) => failure.clone(),
        other => panic!("post {id} was answered {other:?}"),
    };
    // A call without a post, and a post PostMessage refuses: the same code and machine code
    // a unary call's status carries.
    for (id, needle) in [(8, "carries no request"), (9, "text is required")] {
        let failure = failure(id);
        assert_eq!(
            failure.code,
            tonic::Code::InvalidArgument as i32,
            "{failure:?}"
        );
        assert_eq!(failure.error_code, "bad_request", "{failure:?}");
        assert!(failure.message.contains(needle), "{failure:?}");
    }
    let Outcome::Response(theirs) = &answers[&10] else {
        panic!("post 10 was answered {:?}", answers[&10]);
    };
    assert!(theirs.conversation_created);

    // Each post landed in its own app, and nothing else was stored.
    assert_eq!(texts(&app.get("user1").await.unwrap()), ["hello"]);
    assert_eq!(texts(&other.get("user1").await.unwrap()), ["other app"]);
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE app_id = $1 OR app_id = $2")
            .bind(&app.app_id)
            .bind(&other.app_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 2);
}

#[tokio::test]
async fn a_stopping_replica_hands_back_unrun_the_posts_it_reads_afterwards() {
    let (addr, shutdown) = start(2).await;
    let mut app = TestApp::at(&addr).await;
    let mut lane = Lane::open(&addr).await;

    lane.send(vec![call(
        1,
        Some(post_request(
            &app.app_id,
            "user1",
            new_message("appUser", "before"),
        )),
    )]);
    let (answers, _) = lane.read(1).await;
    assert!(matches!(answers[&1], Outcome::Response(_)), "{answers:?}");
    assert_eq!(texts(&app.get("user1").await.unwrap()), ["before"]);

    shutdown.cancel();
    let answers = lane.until_stopping().await;
    assert!(answers.is_empty(), "{answers:?}");

    // What the gateway sends after that comes back whole, for another replica.
    let late = post_request(&app.app_id, "user1", new_message("appUser", "after"));
    lane.send(vec![call(2, Some(late.clone()))]);
    let (answers, _) = lane.read(1).await;
    assert_eq!(answers[&2], Outcome::NotRun(late));

    // Once the gateway ends its side, the replica ends the stream.
    drop(lane.calls);
    let end = tokio::time::timeout(Duration::from_secs(4), lane.replies.message())
        .await
        .expect("the stream ends before the replica's drain limit");
    assert!(matches!(end, Ok(None)), "{end:?}");

    let stored: Vec<String> =
        sqlx::query_scalar("SELECT text FROM messages WHERE app_id = $1 ORDER BY received_ms")
            .bind(&app.app_id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, ["before"]);
}
