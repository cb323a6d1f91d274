//! The init rules: which app user a device and userId belong to, and device bookkeeping.

use std::collections::HashSet;

use proto::v1 as pb;
use serde_json::{json, Value};
use tonic::Code;

use crate::{device, expect_error, init, new_device_id, start, start_with_app};

fn device_of<'a>(user: &'a pb::AppUser, device_id: &str) -> &'a pb::Device {
    user.devices
        .iter()
        .find(|d| d.id == device_id)
        .unwrap_or_else(|| panic!("{device_id} not among {:?}", user.devices))
}

#[tokio::test]
async fn first_init_creates_a_fresh_anonymous_user_with_its_device() {
    let (mut svc, app) = start_with_app().await;
    let before = domain::time::now_ms();
    let d = new_device_id();
    let user = svc
        .client
        .init(pb::InitRequest {
            app_id: app.id.clone(),
            user_id: None,
            device: Some(pb::Device {
                id: d.clone(),
                platform: "android".into(),
                app_version: Some("1.0".into()),
                push_notification_token: Some("push-1".into()),
                info_json: r#"{"os":"Android","osVersion":"6.0"}"#.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(domain::id::is_id(&user.id), "{user:?}");
    assert_eq!(user.app_id, app.id);
    assert_eq!(user.user_id, None);
    assert_eq!(user.given_name, None);
    assert!(!user.conversation_started);
    assert_eq!(
        serde_json::from_str::<Value>(&user.properties_json).unwrap(),
        json!({})
    );
    assert!(user.signed_up_at_ms >= before && user.signed_up_at_ms <= domain::time::now_ms() + 1);
    assert_eq!(user.devices.len(), 1);
    let dev = &user.devices[0];
    assert_eq!(dev.id, d);
    assert_eq!(dev.platform, "android");
    assert_eq!(dev.app_version.as_deref(), Some("1.0"));
    assert_eq!(dev.push_notification_token.as_deref(), Some("push-1"));
    assert_eq!(
        serde_json::from_str::<Value>(&dev.info_json).unwrap(),
        json!({"os": "Android", "osVersion": "6.0"})
    );
    assert!(dev.active);
    assert!(dev.last_seen_ms >= before);
}

#[tokio::test]
async fn same_device_without_user_id_gets_the_same_anonymous_user() {
    let (mut svc, app) = start_with_app().await;
    let d = new_device_id();
    let first = init(&mut svc.client, &app.id, None, &d).await;
    let second = init(&mut svc.client, &app.id, None, &d).await;
    assert_eq!(first.id, second.id);
    assert_eq!(second.devices.len(), 1);
    assert!(second.devices[0].last_seen_ms >= first.devices[0].last_seen_ms);

    let other = init(&mut svc.client, &app.id, None, &new_device_id()).await;
    assert_ne!(
        other.id, first.id,
        "another device is another anonymous user"
    );
}

#[tokio::test]
async fn user_id_links_two_devices_to_one_user() {
    let (mut svc, app) = start_with_app().await;
    let (phone, laptop) = (new_device_id(), new_device_id());
    let on_phone = init(
        &mut svc.client,
        &app.id,
        Some("steveb@channel5.com"),
        &phone,
    )
    .await;
    let on_laptop = init(
        &mut svc.client,
        &app.id,
        Some("steveb@channel5.com"),
        &laptop,
    )
    .await;
    assert_eq!(on_phone.id, on_laptop.id);
    assert_eq!(on_laptop.user_id.as_deref(), Some("steveb@channel5.com"));
    let ids: HashSet<_> = on_laptop.devices.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids, HashSet::from([phone, laptop]));
    assert!(on_laptop.devices.iter().all(|d| d.active));
}

#[tokio::test]
async fn same_user_id_in_another_app_is_another_user() {
    let (mut svc, app) = start_with_app().await;
    let other = crate::create_app(&mut svc.client, "other").await;
    let d = new_device_id();
    let here = init(&mut svc.client, &app.id, Some("bob"), &d).await;
    let there = init(&mut svc.client, &other.id, Some("bob"), &d).await;
    assert_ne!(here.id, there.id);
}

#[tokio::test]
async fn login_upgrades_the_anonymous_user_of_the_device() {
    let (mut svc, app) = start_with_app().await;
    let d = new_device_id();
    let anonymous = init(&mut svc.client, &app.id, None, &d).await;
    let logged_in = init(&mut svc.client, &app.id, Some("bob@example.com"), &d).await;
    assert_eq!(logged_in.id, anonymous.id);
    assert_eq!(logged_in.user_id.as_deref(), Some("bob@example.com"));
    assert_eq!(logged_in.signed_up_at_ms, anonymous.signed_up_at_ms);

    // Logging out (no userId) on that device now starts a new anonymous user.
    let after_logout = init(&mut svc.client, &app.id, None, &d).await;
    assert_ne!(after_logout.id, logged_in.id);
    assert_eq!(after_logout.user_id, None);
}

#[tokio::test]
async fn login_as_a_known_user_on_an_anonymous_device_merges_into_that_user() {
    let (mut svc, app) = start_with_app().await;
    let (phone, tablet) = (new_device_id(), new_device_id());
    let alice = init(&mut svc.client, &app.id, Some("alice"), &phone).await;
    assert!(alice.pending_merges.is_empty());
    let anonymous = init(&mut svc.client, &app.id, None, &tablet).await;
    svc.client
        .update_app_user(pb::UpdateAppUserRequest {
            app_id: app.id.clone(),
            app_user_id: anonymous.id.clone(),
            given_name: Some("Al".into()),
            properties_json: r#"{"plan":"free","seen":1}"#.into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let logged_in = init(&mut svc.client, &app.id, Some("alice"), &tablet).await;
    assert_eq!(logged_in.id, alice.id);
    assert_eq!(logged_in.pending_merges, vec![anonymous.id.clone()]);
    assert!(device_of(&logged_in, &tablet).active);
    assert!(device_of(&logged_in, &phone).active);
    assert_eq!(logged_in.given_name.as_deref(), Some("Al"));
    assert_eq!(
        serde_json::from_str::<Value>(&logged_in.properties_json).unwrap(),
        json!({"plan": "free", "seen": 1})
    );
    // The anonymous `_id` now resolves to the survivor.
    let resolved = get(&mut svc.client, &app.id, &anonymous.id).await;
    assert_eq!(resolved.id, alice.id);

    // Until settled, every init of the survivor answers the pending merge; then none.
    let again = init(&mut svc.client, &app.id, Some("alice"), &tablet).await;
    assert_eq!(again.id, alice.id);
    assert_eq!(again.pending_merges, vec![anonymous.id.clone()]);
    svc.client
        .settle_merge(pb::SettleMergeRequest {
            app_id: app.id.clone(),
            from_app_user_id: anonymous.id.clone(),
        })
        .await
        .unwrap();
    let settled = init(&mut svc.client, &app.id, Some("alice"), &tablet).await;
    assert!(settled.pending_merges.is_empty());
    assert_eq!(settled.devices.len(), 2);
}

#[tokio::test]
async fn concurrent_logins_of_anonymous_devices_end_with_one_user() {
    let (svc, app) = start_with_app().await;
    let mut client = svc.client.clone();
    init(&mut client, &app.id, Some("carol"), &new_device_id()).await;
    let devices: Vec<String> = (0..4).map(|_| new_device_id()).collect();
    let mut anonymous = Vec::new();
    for d in &devices {
        anonymous.push(init(&mut client, &app.id, None, d).await.id);
    }
    // Each device logs in twice at once: merges must neither fail nor repeat.
    let mut tasks = tokio::task::JoinSet::new();
    for d in devices.iter().chain(devices.iter()) {
        let (mut client, app_id, d) = (svc.client.clone(), app.id.clone(), d.clone());
        tasks.spawn(async move { init(&mut client, &app_id, Some("carol"), &d).await });
    }
    let mut ids = HashSet::new();
    while let Some(user) = tasks.join_next().await {
        ids.insert(user.unwrap().id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let carol = init(&mut client, &app.id, Some("carol"), &devices[0]).await;
    let mut pending = carol.pending_merges.clone();
    pending.sort();
    anonymous.sort();
    assert_eq!(pending, anonymous);
    assert_eq!(carol.devices.len(), 5);
}

#[tokio::test]
async fn pre_created_users_conflict_on_their_user_id() {
    let (mut svc, app) = start_with_app().await;
    let created = svc
        .client
        .create_app_user(pb::CreateAppUserRequest {
            app_id: app.id.clone(),
            user_id: "dave".into(),
            given_name: Some("Dave".into()),
            signed_up_at_ms: Some(1_444_348_338_704),
            properties_json: r#"{"tier":"gold"}"#.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.user_id.as_deref(), Some("dave"));
    assert_eq!(created.signed_up_at_ms, 1_444_348_338_704);
    let again = svc
        .client
        .create_app_user(pb::CreateAppUserRequest {
            app_id: app.id.clone(),
            user_id: "dave".into(),
            ..Default::default()
        })
        .await;
    expect_error(again, Code::AlreadyExists, "conflict");
    // Init with that userId finds the pre-created user.
    let found = init(&mut svc.client, &app.id, Some("dave"), &new_device_id()).await;
    assert_eq!(found.id, created.id);
}

#[tokio::test]
async fn devices_update_additively_and_push_tokens_need_a_known_device() {
    let (mut svc, app) = start_with_app().await;
    let d = new_device_id();
    let user = init(&mut svc.client, &app.id, None, &d).await;
    let update = |device: pb::Device, must_exist: bool| pb::UpdateDeviceRequest {
        app_id: app.id.clone(),
        app_user_id: user.id.clone(),
        device: Some(device),
        must_exist,
    };
    let first = svc
        .client
        .update_device(update(
            pb::Device {
                id: d.clone(),
                app_version: Some("2.0".into()),
                info_json: r#"{"a":"1"}"#.into(),
                ..Default::default()
            },
            true,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.platform, "ios");
    assert_eq!(first.app_version.as_deref(), Some("2.0"));
    let second = svc
        .client
        .update_device(update(
            pb::Device {
                id: d.clone(),
                push_notification_token: Some("tok".into()),
                info_json: r#"{"b":"2"}"#.into(),
                ..Default::default()
            },
            true,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.app_version.as_deref(), Some("2.0"));
    assert_eq!(second.push_notification_token.as_deref(), Some("tok"));
    assert_eq!(
        serde_json::from_str::<Value>(&second.info_json).unwrap(),
        json!({"a": "1", "b": "2"})
    );
    let unknown = svc
        .client
        .update_device(update(device("nope", ""), true))
        .await;
    expect_error(unknown, Code::NotFound, "not_found");
    let added = svc
        .client
        .update_device(update(device("new-one", ""), false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.platform, "other");
    let bad = svc
        .client
        .update_device(update(device("x", "palm"), false))
        .await;
    expect_error(bad, Code::InvalidArgument, "bad_request");
}

#[tokio::test]
async fn only_the_most_recent_user_on_a_device_is_active() {
    let (mut svc, app) = start_with_app().await;
    let d = new_device_id();
    let alice = init(&mut svc.client, &app.id, Some("alice"), &d).await;
    assert!(device_of(&alice, &d).active);

    let bob = init(&mut svc.client, &app.id, Some("bob"), &d).await;
    assert_ne!(
        bob.id, alice.id,
        "alice is not anonymous, so bob is a new user"
    );
    assert!(device_of(&bob, &d).active);
    let alice_now = get(&mut svc.client, &app.id, "alice").await;
    assert!(!device_of(&alice_now, &d).active);

    let alice_again = init(&mut svc.client, &app.id, Some("alice"), &d).await;
    assert_eq!(alice_again.id, alice.id);
    assert!(device_of(&alice_again, &d).active);
    let bob_now = get(&mut svc.client, &app.id, "bob").await;
    assert!(!device_of(&bob_now, &d).active);
}

#[tokio::test]
async fn device_details_merge_across_inits() {
    let (mut svc, app) = start_with_app().await;
    let d = new_device_id();
    let send = |info: &str, version: Option<&str>| pb::InitRequest {
        app_id: app.id.clone(),
        user_id: Some("carol".into()),
        device: Some(pb::Device {
            app_version: version.map(str::to_owned),
            info_json: info.to_owned(),
            ..device(&d, "web")
        }),
    };
    svc.client
        .init(send(
            r#"{"currentUrl":"http://a","browserLanguage":"en-US"}"#,
            Some("1.0"),
        ))
        .await
        .unwrap();
    let user = svc
        .client
        .init(send(r#"{"currentUrl":"http://b"}"#, None))
        .await
        .unwrap()
        .into_inner();
    let dev = device_of(&user, &d);
    assert_eq!(
        serde_json::from_str::<Value>(&dev.info_json).unwrap(),
        json!({"currentUrl": "http://b", "browserLanguage": "en-US"})
    );
    assert_eq!(
        dev.app_version.as_deref(),
        Some("1.0"),
        "kept when not sent"
    );
}

#[tokio::test]
async fn concurrent_inits_of_a_new_user_id_from_several_devices_make_one_user() {
    let (svc, app) = start_with_app().await;
    let user_id = format!("racer-{}@example.com", new_device_id());
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let mut client = svc.client.clone();
            let (app_id, user_id) = (app.id.clone(), user_id.clone());
            tokio::spawn(async move {
                init(&mut client, &app_id, Some(&user_id), &new_device_id()).await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for call in calls {
        ids.insert(call.await.unwrap().id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let mut client = svc.client.clone();
    let user = get(&mut client, &app.id, &user_id).await;
    assert_eq!(user.devices.len(), 8);
}

#[tokio::test]
async fn concurrent_inits_of_a_new_device_make_one_anonymous_user() {
    let (svc, app) = start_with_app().await;
    let d = new_device_id();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let mut client = svc.client.clone();
            let (app_id, d) = (app.id.clone(), d.clone());
            tokio::spawn(async move { init(&mut client, &app_id, None, &d).await })
        })
        .collect();
    let mut ids = HashSet::new();
    for call in calls {
        ids.insert(call.await.unwrap().id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[tokio::test]
async fn concurrent_logins_on_one_anonymous_device_make_one_user() {
    let (mut svc, app) = start_with_app().await;
    let d = new_device_id();
    let anonymous = init(&mut svc.client, &app.id, None, &d).await;
    let (mut a, mut b) = (svc.client.clone(), svc.client.clone());
    let (x, y) = tokio::join!(
        init(&mut a, &app.id, Some("dave"), &d),
        init(&mut b, &app.id, Some("dave"), &d),
    );
    assert_eq!(x.id, anonymous.id);
    assert_eq!(y.id, anonymous.id);
}

#[tokio::test]
async fn bad_init_input_is_invalid_argument_naming_the_field() {
    let (mut svc, app) = start_with_app().await;
    let cases = [
        (Some("bob"), Some(device("d1", "palm")), "device.platform"),
        (Some("bob"), None, "device"),
        (Some("bob"), Some(device("", "ios")), "device.id"),
        (Some("  "), Some(device("d1", "ios")), "userId"),
        (
            None,
            Some(pb::Device {
                info_json: r#"{"nested":{"no":1}}"#.into(),
                ..device("d1", "ios")
            }),
            "device.info",
        ),
        (
            None,
            Some(pb::Device {
                info_json: "not json".into(),
                ..device("d1", "ios")
            }),
            "device.info",
        ),
    ];
    for (user_id, device, field) in cases {
        let res = svc
            .client
            .init(pb::InitRequest {
                app_id: app.id.clone(),
                user_id: user_id.map(str::to_owned),
                device,
            })
            .await;
        let why = expect_error(res, Code::InvalidArgument, "bad_request");
        assert!(why.contains(field), "{field}: {why}");
    }
}

#[tokio::test]
async fn init_in_a_missing_app_is_not_found() {
    let mut svc = start().await;
    let res = svc
        .client
        .init(pb::InitRequest {
            app_id: domain::id::new_id(),
            user_id: Some("bob".into()),
            device: Some(device("d1", "ios")),
        })
        .await;
    expect_error(res, Code::NotFound, "not_found");
}

async fn get(client: &mut crate::Client, app_id: &str, id_or_user_id: &str) -> pb::AppUser {
    client
        .get_app_user(pb::GetAppUserRequest {
            app_id: app_id.to_owned(),
            id_or_user_id: id_or_user_id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
}
