//! Apps, keys, credential resolution and the operator's account key.

use proto::v1 as pb;
use tonic::Code;

use crate::{create_app, database_url, expect_error, init, migrated, start, start_with_app};

#[tokio::test]
async fn created_app_has_an_id_a_token_and_can_be_got_and_listed() {
    let mut svc = start().await;
    let first = create_app(&mut svc.client, "first").await;
    let second = create_app(&mut svc.client, "second").await;
    assert!(domain::id::is_id(&first.id), "{first:?}");
    assert_eq!(first.name, "first");
    assert_eq!(first.app_token.len(), 25);
    assert!(first.created_at_ms > 0);

    let got = svc
        .client
        .get_app(pb::GetAppRequest {
            app_id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, first);

    let apps = svc
        .client
        .list_apps(pb::ListAppsRequest {
            limit: None,
            offset: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .apps;
    let at = |id: &str| apps.iter().position(|a| a.id == id).unwrap();
    assert!(at(&first.id) > at(&second.id), "listed newest first");

    // Pages: `has_more` says whether another follows.
    let page = svc
        .client
        .list_apps(pb::ListAppsRequest {
            limit: Some(1),
            offset: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.apps.len(), 1);
    assert!(page.has_more);
}

#[tokio::test]
async fn create_app_needs_a_short_non_blank_name() {
    let mut svc = start().await;
    for name in ["", "   ", &"x".repeat(2049)] {
        let res = svc
            .client
            .create_app(pb::CreateAppRequest {
                name: name.to_owned(),
            })
            .await;
        let why = expect_error(res, Code::InvalidArgument, "bad_request");
        assert!(why.contains("name"), "{why}");
    }
}

#[tokio::test]
async fn missing_app_is_not_found() {
    let mut svc = start().await;
    let missing = domain::id::new_id();
    let req = || pb::GetAppRequest {
        app_id: missing.clone(),
    };
    let why = expect_error(svc.client.get_app(req()).await, Code::NotFound, "not_found");
    assert_eq!(why, format!("app {missing} not found"));
    expect_error(
        svc.client.delete_app(req()).await,
        Code::NotFound,
        "not_found",
    );
    expect_error(
        svc.client.list_keys(req()).await,
        Code::NotFound,
        "not_found",
    );
    let res = svc
        .client
        .create_key(pb::CreateKeyRequest {
            app_id: missing.clone(),
            name: "k".into(),
        })
        .await;
    expect_error(res, Code::NotFound, "not_found");
}

#[tokio::test]
async fn deleting_an_app_removes_its_token_keys_and_app_users() {
    let (mut svc, app) = start_with_app().await;
    let key = svc
        .client
        .create_key(pb::CreateKeyRequest {
            app_id: app.id.clone(),
            name: "server".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let user = init(&mut svc.client, &app.id, Some("steve"), "device-of-steve").await;

    svc.client
        .delete_app(pb::GetAppRequest {
            app_id: app.id.clone(),
        })
        .await
        .unwrap();

    let res = svc
        .client
        .get_app(pb::GetAppRequest {
            app_id: app.id.clone(),
        })
        .await;
    expect_error(res, Code::NotFound, "not_found");
    let res = svc
        .client
        .resolve_app_token(pb::ResolveAppTokenRequest {
            app_token: app.app_token.clone(),
        })
        .await;
    expect_error(res, Code::NotFound, "not_found");
    let res = svc
        .client
        .resolve_key(pb::ResolveKeyRequest { key_id: key.id })
        .await;
    expect_error(res, Code::NotFound, "not_found");
    let res = svc
        .client
        .get_app_user(pb::GetAppUserRequest {
            app_id: app.id.clone(),
            id_or_user_id: user.id,
        })
        .await;
    expect_error(res, Code::NotFound, "not_found");
}

#[tokio::test]
async fn created_key_is_listed_with_its_secret_and_resolves_by_id() {
    let (mut svc, app) = start_with_app().await;
    let key = svc
        .client
        .create_key(pb::CreateKeyRequest {
            app_id: app.id.clone(),
            name: "server".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(domain::id::is_id(&key.id), "{key:?}");
    assert_eq!(key.app_id, app.id);
    assert_eq!(key.name, "server");
    assert_eq!(key.scope, "app");
    assert!(key.secret.len() >= 24, "{key:?}");

    let keys = svc
        .client
        .list_keys(pb::GetAppRequest {
            app_id: app.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys, vec![key.clone()]);

    let resolved = svc
        .client
        .resolve_key(pb::ResolveKeyRequest {
            key_id: key.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved, key);

    svc.client
        .delete_key(pb::DeleteKeyRequest {
            app_id: app.id.clone(),
            key_id: key.id.clone(),
        })
        .await
        .unwrap();
    let res = svc
        .client
        .resolve_key(pb::ResolveKeyRequest { key_id: key.id })
        .await;
    expect_error(res, Code::NotFound, "not_found");
}

#[tokio::test]
async fn create_key_needs_a_name() {
    let (mut svc, app) = start_with_app().await;
    let res = svc
        .client
        .create_key(pb::CreateKeyRequest {
            app_id: app.id,
            name: " ".into(),
        })
        .await;
    let why = expect_error(res, Code::InvalidArgument, "bad_request");
    assert!(why.contains("name"), "{why}");
}

#[tokio::test]
async fn another_apps_key_cannot_be_deleted_or_listed() {
    let (mut svc, mine) = start_with_app().await;
    let theirs = create_app(&mut svc.client, "theirs").await;
    let their_key = svc
        .client
        .create_key(pb::CreateKeyRequest {
            app_id: theirs.id.clone(),
            name: "theirs".into(),
        })
        .await
        .unwrap()
        .into_inner();

    let res = svc
        .client
        .delete_key(pb::DeleteKeyRequest {
            app_id: mine.id.clone(),
            key_id: their_key.id.clone(),
        })
        .await;
    let why = expect_error(res, Code::NotFound, "not_found");
    assert_eq!(why, format!("key {} not found", their_key.id));

    let my_keys = svc
        .client
        .list_keys(pb::GetAppRequest { app_id: mine.id })
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert!(my_keys.is_empty(), "{my_keys:?}");
    // Still there for its own app.
    let resolved = svc
        .client
        .resolve_key(pb::ResolveKeyRequest {
            key_id: their_key.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.app_id, theirs.id);
}

#[tokio::test]
async fn app_token_resolves_to_its_app_and_unknown_credentials_are_not_found() {
    let (mut svc, app) = start_with_app().await;
    let resolved = svc
        .client
        .resolve_app_token(pb::ResolveAppTokenRequest {
            app_token: app.app_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved, app);

    for token in ["", "nosuchtoken0000000000000"] {
        let res = svc
            .client
            .resolve_app_token(pb::ResolveAppTokenRequest {
                app_token: token.to_owned(),
            })
            .await;
        expect_error(res, Code::NotFound, "not_found");
    }
    let res = svc
        .client
        .resolve_key(pb::ResolveKeyRequest {
            key_id: domain::id::new_id(),
        })
        .await;
    expect_error(res, Code::NotFound, "not_found");
}

#[tokio::test]
async fn configured_account_key_is_stored_and_its_secret_updated() {
    let mut svc = start().await;
    let id = format!("operator_{}", domain::id::new_id());
    let first = users::ensure_account_key(&database_url(), Some((id.clone(), "s3cret".into())))
        .await
        .unwrap();
    assert_eq!(first, users::AccountKey::Configured);
    let again = users::ensure_account_key(&database_url(), Some((id.clone(), "rotated".into())))
        .await
        .unwrap();
    assert_eq!(again, users::AccountKey::Configured);

    let key = svc
        .client
        .resolve_key(pb::ResolveKeyRequest { key_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(key.scope, "account");
    assert_eq!(key.app_id, "");
    assert_eq!(key.name, "operator");
    assert_eq!(key.secret, "rotated");
}

#[tokio::test]
async fn configured_account_key_may_not_take_an_app_keys_id() {
    let (mut svc, app) = start_with_app().await;
    let key = svc
        .client
        .create_key(pb::CreateKeyRequest {
            app_id: app.id,
            name: "k".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let res = users::ensure_account_key(&database_url(), Some((key.id.clone(), "x".into()))).await;
    assert!(res.is_err());
    let kept = svc
        .client
        .resolve_key(pb::ResolveKeyRequest { key_id: key.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.secret, key.secret);
}

#[tokio::test]
async fn concurrent_starts_create_at_most_one_account_key() {
    let mut svc = start().await;
    migrated().await;
    let calls: Vec<_> = (0..6)
        .map(|_| tokio::spawn(async { users::ensure_account_key(&database_url(), None).await }))
        .collect();
    let mut created = 0;
    for call in calls {
        let id = match call.await.unwrap().unwrap() {
            users::AccountKey::Created { id, secret } => {
                created += 1;
                assert!(!secret.is_empty());
                id
            }
            users::AccountKey::Existing { id } => id,
            users::AccountKey::Configured => panic!("nothing was configured"),
        };
        let key = svc
            .client
            .resolve_key(pb::ResolveKeyRequest { key_id: id })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(key.scope, "account");
    }
    assert!(created <= 1, "{created} account keys created");
    // Once one exists, it is found.
    let after = users::ensure_account_key(&database_url(), None)
        .await
        .unwrap();
    assert!(
        matches!(after, users::AccountKey::Existing { .. }),
        "{after:?}"
    );
}

#[tokio::test]
async fn the_push_log_keeps_a_week_of_attempts() {
    let mut svc = start().await;
    let app = create_app(&mut svc.client, "push-log").await;
    let now_ms = domain::time::now_ms();
    let attempt = |id: &str, attempted_at_ms: i64| pb::PushAttempt {
        app_id: app.id.clone(),
        app_user_id: "user1".to_owned(),
        device_id: "device1".to_owned(),
        platform: "ios".to_owned(),
        provider: "apns".to_owned(),
        status: "delivered".to_owned(),
        message_id: id.to_owned(),
        attempt: 1,
        attempted_at_ms,
        ..Default::default()
    };
    let hour_ms = 3_600_000;
    let retention_ms = i64::from(users::PUSH_LOG_RETENTION_HOURS) * hour_ms;
    svc.client
        .record_push_attempts(pb::RecordPushAttemptsRequest {
            attempts: vec![
                attempt("expired", now_ms - retention_ms - hour_ms),
                attempt("kept", now_ms - retention_ms + hour_ms),
            ],
        })
        .await
        .unwrap();
    // Every users service the tests start runs the same purge at its start, on the same
    // database: one of them may delete the expired attempt first, so the count may be 0.
    // What must hold is what is left afterwards.
    users::purge_push_log(&database_url(), users::PUSH_LOG_RETENTION_HOURS)
        .await
        .unwrap();
    let left: Vec<String> = svc
        .client
        .list_push_attempts(pb::ListPushAttemptsRequest {
            app_id: app.id.clone(),
            limit: 0,
            offset: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .attempts
        .into_iter()
        .map(|a| a.message_id)
        .collect();
    assert_eq!(
        left,
        vec!["kept"],
        "the expired attempt is deleted, the other kept"
    );
}
