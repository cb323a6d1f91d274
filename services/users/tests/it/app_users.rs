//! Reading and updating app users.

use proto::v1 as pb;
use serde_json::{json, Value};
use tonic::Code;

use crate::{expect_error, init, new_device_id, start_with_app, Client};

fn get_req(app_id: &str, id_or_user_id: &str) -> pb::GetAppUserRequest {
    pb::GetAppUserRequest {
        app_id: app_id.to_owned(),
        id_or_user_id: id_or_user_id.to_owned(),
    }
}

async fn get(client: &mut Client, app_id: &str, id_or_user_id: &str) -> pb::AppUser {
    client
        .get_app_user(get_req(app_id, id_or_user_id))
        .await
        .unwrap()
        .into_inner()
}

fn properties(user: &pb::AppUser) -> Value {
    serde_json::from_str(&user.properties_json).unwrap()
}

#[tokio::test]
async fn app_user_is_found_by_id_and_by_user_id_with_devices() {
    let (mut svc, app) = start_with_app().await;
    let d = new_device_id();
    let user = init(&mut svc.client, &app.id, Some("steveb@channel5.com"), &d).await;

    let by_id = get(&mut svc.client, &app.id, &user.id).await;
    let by_user_id = get(&mut svc.client, &app.id, "steveb@channel5.com").await;
    assert_eq!(by_id, user);
    assert_eq!(by_user_id, user);
    assert_eq!(by_id.devices.len(), 1);
    assert_eq!(by_id.devices[0].id, d);
}

#[tokio::test]
async fn user_id_shaped_like_an_id_is_found_by_user_id() {
    let (mut svc, app) = start_with_app().await;
    let id_like = domain::id::new_id();
    let user = init(&mut svc.client, &app.id, Some(&id_like), &new_device_id()).await;
    assert_ne!(user.id, id_like);
    assert_eq!(get(&mut svc.client, &app.id, &id_like).await.id, user.id);
}

#[tokio::test]
async fn missing_app_user_is_not_found_and_other_apps_users_are_invisible() {
    let (mut svc, app) = start_with_app().await;
    let other = crate::create_app(&mut svc.client, "other").await;
    let theirs = init(&mut svc.client, &other.id, Some("eve"), &new_device_id()).await;

    let why = expect_error(
        svc.client.get_app_user(get_req(&app.id, "nobody")).await,
        Code::NotFound,
        "not_found",
    );
    assert_eq!(why, "app user nobody not found");
    for key in [theirs.id.as_str(), "eve"] {
        let res = svc.client.get_app_user(get_req(&app.id, key)).await;
        expect_error(res, Code::NotFound, "not_found");
    }
}

#[tokio::test]
async fn update_is_additive_and_merges_properties() {
    let (mut svc, app) = start_with_app().await;
    let d = new_device_id();
    let user = init(&mut svc.client, &app.id, None, &d).await;
    let update = |req: pb::UpdateAppUserRequest| pb::UpdateAppUserRequest {
        app_id: app.id.clone(),
        app_user_id: user.id.clone(),
        ..req
    };

    let first = svc
        .client
        .update_app_user(update(pb::UpdateAppUserRequest {
            given_name: Some("Steve".into()),
            email: Some("steveb@channel5.com".into()),
            signed_up_at_ms: Some(1_444_348_331_677),
            properties_json: r#"{"plan":"free","age":42}"#.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.given_name.as_deref(), Some("Steve"));
    assert_eq!(first.signed_up_at_ms, 1_444_348_331_677);
    assert_eq!(properties(&first), json!({"plan": "free", "age": 42}));
    assert_eq!(first.devices.len(), 1);

    let second = svc
        .client
        .update_app_user(update(pb::UpdateAppUserRequest {
            surname: Some("Brule".into()),
            properties_json: r#"{"plan":"pro","vip":true}"#.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.given_name.as_deref(), Some("Steve"), "kept");
    assert_eq!(second.surname.as_deref(), Some("Brule"));
    assert_eq!(second.email.as_deref(), Some("steveb@channel5.com"), "kept");
    assert_eq!(second.signed_up_at_ms, 1_444_348_331_677, "kept");
    assert_eq!(
        properties(&second),
        json!({"plan": "pro", "age": 42, "vip": true})
    );

    let nothing = svc
        .client
        .update_app_user(update(pb::UpdateAppUserRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nothing, second, "an empty update changes nothing");
    assert_eq!(get(&mut svc.client, &app.id, &user.id).await, second);
}

#[tokio::test]
async fn update_finds_the_user_by_user_id() {
    let (mut svc, app) = start_with_app().await;
    let user = init(
        &mut svc.client,
        &app.id,
        Some("frank@example.com"),
        &new_device_id(),
    )
    .await;
    let updated = svc
        .client
        .update_app_user(pb::UpdateAppUserRequest {
            app_id: app.id.clone(),
            app_user_id: "frank@example.com".into(),
            given_name: Some("Frank".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.id, user.id);
    assert_eq!(updated.given_name.as_deref(), Some("Frank"));
}

#[tokio::test]
async fn bad_updates_are_invalid_argument_naming_the_field() {
    let (mut svc, app) = start_with_app().await;
    let user = init(&mut svc.client, &app.id, None, &new_device_id()).await;
    let cases = [
        (
            pb::UpdateAppUserRequest {
                properties_json: r#"{"address":{"city":"Paris"}}"#.into(),
                ..Default::default()
            },
            "properties.address",
        ),
        (
            pb::UpdateAppUserRequest {
                properties_json: "[]".into(),
                ..Default::default()
            },
            "properties",
        ),
        (
            pb::UpdateAppUserRequest {
                given_name: Some("x".repeat(2049)),
                ..Default::default()
            },
            "givenName",
        ),
    ];
    for (req, field) in cases {
        let res = svc
            .client
            .update_app_user(pb::UpdateAppUserRequest {
                app_id: app.id.clone(),
                app_user_id: user.id.clone(),
                ..req
            })
            .await;
        let why = expect_error(res, Code::InvalidArgument, "bad_request");
        assert!(why.contains(field), "{field}: {why}");
    }
}

#[tokio::test]
async fn updating_or_marking_a_missing_app_user_is_not_found() {
    let (mut svc, app) = start_with_app().await;
    let missing = domain::id::new_id();
    let res = svc
        .client
        .update_app_user(pb::UpdateAppUserRequest {
            app_id: app.id.clone(),
            app_user_id: missing.clone(),
            given_name: Some("Ghost".into()),
            ..Default::default()
        })
        .await;
    let why = expect_error(res, Code::NotFound, "not_found");
    assert_eq!(why, format!("app user {missing} not found"));
    let res = svc
        .client
        .mark_conversation_started(pb::AppUserRef {
            app_id: app.id.clone(),
            app_user_id: missing,
        })
        .await;
    expect_error(res, Code::NotFound, "not_found");
}

#[tokio::test]
async fn marking_the_conversation_started_sets_the_flag() {
    let (mut svc, app) = start_with_app().await;
    let user = init(&mut svc.client, &app.id, None, &new_device_id()).await;
    assert!(!user.conversation_started);
    svc.client
        .mark_conversation_started(pb::AppUserRef {
            app_id: app.id.clone(),
            app_user_id: user.id.clone(),
        })
        .await
        .unwrap();
    assert!(
        get(&mut svc.client, &app.id, &user.id)
            .await
            .conversation_started
    );
}
