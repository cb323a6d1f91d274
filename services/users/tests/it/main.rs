//! Integration tests of the users service: each test starts `users::run` on a free port
//! against the real Postgres and drives it with the generated gRPC client. Tests run in
//! parallel; each makes its own app.
#![allow(clippy::unwrap_used)]

mod app_users;
mod apps;
mod init;

use proto::v1 as pb;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::Channel;

/// The gRPC client the tests use.
pub(crate) type Client = pb::users_client::UsersClient<Channel>;

/// The test database, from `SMOOCH_TEST_DATABASE_URL` or the local default.
pub(crate) fn database_url() -> String {
    std::env::var("SMOOCH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/smooch_test".to_owned())
}

/// Creates the database and migrates it, once per test binary.
pub(crate) async fn migrated() {
    static MIGRATED: OnceCell<()> = OnceCell::const_new();
    MIGRATED
        .get_or_init(|| async {
            let url = database_url();
            db::ensure_database(&url).await.unwrap();
            users::migrate(&url).await.unwrap();
        })
        .await;
}

/// A running users service; stops when dropped.
pub(crate) struct Service {
    pub(crate) client: Client,
    _stop: DropGuard,
}

/// Starts the service on a free port and connects a client to it.
pub(crate) async fn start() -> Service {
    migrated().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let config = users::Config {
        database_url: database_url(),
        max_connections: 5,
        redis: None,
        conversations_addr: None,
        secrets_key: users::SecretsKey::development(),
    };
    tokio::spawn(users::run(config, listener, shutdown.clone()));
    let client = Client::connect(format!("http://{addr}")).await.unwrap();
    Service {
        client,
        _stop: shutdown.drop_guard(),
    }
}

/// Starts the service and creates an app for the test.
pub(crate) async fn start_with_app() -> (Service, pb::App) {
    let mut svc = start().await;
    let app = create_app(&mut svc.client, "test app").await;
    (svc, app)
}

pub(crate) async fn create_app(client: &mut Client, name: &str) -> pb::App {
    client
        .create_app(pb::CreateAppRequest {
            name: name.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// A device with just an id and a platform.
pub(crate) fn device(id: &str, platform: &str) -> pb::Device {
    pb::Device {
        id: id.to_owned(),
        platform: platform.to_owned(),
        ..Default::default()
    }
}

/// Inits `device_id` (an ios device) for `user_id` in `app_id`.
pub(crate) async fn init(
    client: &mut Client,
    app_id: &str,
    user_id: Option<&str>,
    device_id: &str,
) -> pb::AppUser {
    client
        .init(pb::InitRequest {
            app_id: app_id.to_owned(),
            user_id: user_id.map(str::to_owned),
            device: Some(device(device_id, "ios")),
        })
        .await
        .unwrap()
        .into_inner()
}

/// A device id no other test uses.
pub(crate) fn new_device_id() -> String {
    domain::id::new_secret(16)
}

/// Checks a failed call's gRPC code and our machine code, and returns its description.
pub(crate) fn expect_error<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: tonic::Code,
    machine_code: &str,
) -> String {
    let status = result.unwrap_err();
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get(wire::status::CODE_METADATA_KEY)
            .and_then(|v| v.to_str().ok()),
        Some(machine_code),
        "{status:?}"
    );
    status.message().to_owned()
}
