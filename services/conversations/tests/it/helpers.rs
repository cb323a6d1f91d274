//! Starts the service and makes requests for the tests.

use proto::v1 as pb;
use proto::v1::conversations_client::ConversationsClient;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::Channel;

/// The test database; `SMOOCH_TEST_DATABASE_URL` overrides it.
pub(crate) fn database_url() -> String {
    std::env::var("SMOOCH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/smooch_test".to_owned())
}

static MIGRATED: OnceCell<()> = OnceCell::const_new();

/// A running service, an app of the test's own and a pool on the service's schema.
pub(crate) struct TestApp {
    pub(crate) client: ConversationsClient<Channel>,
    pub(crate) app_id: String,
    pub(crate) pool: PgPool,
    /// Stops the replica when the test ends, if the test started it for this app.
    pub(crate) _shutdown: Option<DropGuard>,
}

/// Starts the service on a free port (migrating the test database first).
pub(crate) async fn spawn() -> TestApp {
    spawn_with_writers(2).await
}

/// [`spawn`] with `message_writers` message writers.
pub(crate) async fn spawn_with_writers(message_writers: usize) -> TestApp {
    let (addr, shutdown) = start(message_writers).await;
    TestApp {
        _shutdown: Some(shutdown.drop_guard()),
        ..TestApp::at(&addr).await
    }
}

/// Starts a replica on a free port (migrating the test database first): its address, and
/// what stops it.
pub(crate) async fn start(message_writers: usize) -> (String, CancellationToken) {
    let url = database_url();
    MIGRATED
        .get_or_init(|| async {
            db::ensure_database(&url).await.expect("test database");
            conversations::migrate(&url).await.expect("migrations");
        })
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    let shutdown = CancellationToken::new();
    let config = conversations::Config {
        database_url: url,
        max_connections: 5,
        relay: None,
        message_writers,
        users_addr: None,
    };
    tokio::spawn(conversations::run(config, listener, shutdown.clone()));
    (addr, shutdown)
}

/// A new message by `role` with `text`.
pub(crate) fn new_message(role: &str, text: &str) -> pb::NewMessage {
    pb::NewMessage {
        role: role.to_owned(),
        text: text.to_owned(),
        ..Default::default()
    }
}

/// An app maker's message signed by key `key_id`.
pub(crate) fn maker_message(key_id: &str, text: &str) -> pb::NewMessage {
    pb::NewMessage {
        author_id: key_id.to_owned(),
        ..new_message("appMaker", text)
    }
}

/// The app user `id` of `app_id`, as the users service would show them.
pub(crate) fn app_user(app_id: &str, id: &str) -> pb::AppUser {
    pb::AppUser {
        id: id.to_owned(),
        app_id: app_id.to_owned(),
        given_name: Some("Steve".to_owned()),
        surname: Some("Brule".to_owned()),
        signed_up_at_ms: 1_444_348_338_704,
        properties_json: r#"{"favoriteFood":"prunes"}"#.to_owned(),
        ..Default::default()
    }
}

/// A post of `message` to the conversation of app user `user` of `app_id`.
pub(crate) fn post_request(
    app_id: &str,
    user: &str,
    message: pb::NewMessage,
) -> pb::PostMessageRequest {
    pb::PostMessageRequest {
        app_id: app_id.to_owned(),
        app_user_id: user.to_owned(),
        message: Some(message),
        app_user: Some(app_user(app_id, user)),
        ..Default::default()
    }
}

impl TestApp {
    /// A new app on the replica at `addr`, which the caller stops.
    pub(crate) async fn at(addr: &str) -> TestApp {
        let client = ConversationsClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        TestApp {
            client,
            app_id: domain::id::new_id(),
            pool: db::connect(&database_url(), conversations::SCHEMA, 2).expect("pool"),
            _shutdown: None,
        }
    }

    /// Posts `message` to the conversation of app user `user`.
    pub(crate) async fn post(
        &mut self,
        user: &str,
        message: pb::NewMessage,
    ) -> Result<pb::PostMessageResponse, tonic::Status> {
        self.client
            .post_message(post_request(&self.app_id, user, message))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Marks the conversation of app user `user` read by that user.
    pub(crate) async fn mark_read(
        &mut self,
        user: &str,
    ) -> Result<pb::Conversation, tonic::Status> {
        let request = pb::MarkReadRequest {
            app_id: self.app_id.clone(),
            app_user_id: user.to_owned(),
            app_user: None,
        };
        self.client
            .mark_read(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Gets the conversation of app user `user`.
    pub(crate) async fn get(&mut self, user: &str) -> Result<pb::Conversation, tonic::Status> {
        let request = pb::GetConversationRequest {
            app_id: self.app_id.clone(),
            app_user_id: user.to_owned(),
            ..Default::default()
        };
        self.client
            .get_conversation(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

/// Asserts that `status` is a client error with `code`, `grpc` and a description
/// containing `needle`.
pub(crate) fn assert_error(status: &tonic::Status, grpc: tonic::Code, code: &str, needle: &str) {
    assert_eq!(status.code(), grpc, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get(wire::status::CODE_METADATA_KEY)
            .and_then(|v| v.to_str().ok()),
        Some(code),
        "{status:?}"
    );
    assert!(status.message().contains(needle), "{status:?}");
}
