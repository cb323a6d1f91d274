//! Pagination of a conversation: the latest 100 messages by default, `?before=` and
//! `?after=` (exclusive) with `previous` / `next` links, through any history.

use std::collections::HashSet;

use e2e::{suite, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The path and query of a `previous` / `next` link.
fn path_of(link: &Value) -> String {
    let url = link.as_str().unwrap();
    let at = url.find("/v1/").unwrap();
    url[at..].to_owned()
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = suite()
        .call(Method::GET, path, &app.app_token(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

fn texts(page: &Value) -> Vec<String> {
    page["conversation"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Posts `n` messages, several at a time so that some share a millisecond, and returns
/// their ids.
async fn post_many(app: &TestApp, user: &str, n: usize) -> HashSet<String> {
    let mut ids = HashSet::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let mut tasks = tokio::task::JoinSet::new();
        for i in chunk {
            let (app, user, i) = (app.clone(), user.to_owned(), *i);
            tasks.spawn(async move {
                let role = if i % 3 == 0 { "appMaker" } else { "appUser" };
                app.post_message(&user, role, &format!("m{i}")).await["message"]["_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            });
        }
        while let Some(id) = tasks.join_next().await {
            ids.insert(id.unwrap());
        }
    }
    ids
}

fn received(page: &Value) -> Vec<f64> {
    page["conversation"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["received"].as_f64().unwrap())
        .collect()
}

#[tokio::test]
async fn pages_walk_the_whole_history_both_ways() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap();
    let posted = post_many(&app, id, 230).await;

    let latest = get(&app, &format!("/v1/appusers/{id}/conversation")).await;
    // 100, or a few fewer when the page would end inside a millisecond that several
    // messages share: those are all left for the previous page.
    let len = latest["conversation"]["messages"].as_array().unwrap().len();
    assert!((90..=100).contains(&len), "{len}");
    assert!(latest.get("next").is_none(), "{}", latest["next"]);
    // Walk back with `previous` to the very first message.
    let mut seen: Vec<Value> = Vec::new();
    let mut page = latest.clone();
    let mut pages = 0;
    loop {
        let mut messages = page["conversation"]["messages"].as_array().unwrap().clone();
        assert!(messages.len() <= 100);
        let times = received(&page);
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
        messages.extend(seen);
        seen = messages;
        pages += 1;
        let Some(previous) = page.get("previous") else {
            break;
        };
        page = get(&app, &path_of(previous)).await;
        assert!(page.get("next").is_some(), "an older page links forward");
    }
    assert!(pages >= 3, "{pages} pages");
    let ids: Vec<&str> = seen.iter().map(|m| m["_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 230, "every message exactly once");
    assert_eq!(ids.iter().copied().collect::<HashSet<_>>().len(), 230);
    assert_eq!(
        ids.iter().map(|s| (*s).to_owned()).collect::<HashSet<_>>(),
        posted
    );

    // And forward from before the first message with `next`.
    let first = seen[0]["received"].as_f64().unwrap();
    let mut page = get(
        &app,
        &format!("/v1/appusers/{id}/conversation?after={}", first - 0.001),
    )
    .await;
    assert!(page.get("previous").is_none());
    let mut forward: Vec<Value> = Vec::new();
    loop {
        forward.extend(page["conversation"]["messages"].as_array().unwrap().clone());
        let Some(next) = page.get("next") else { break };
        page = get(&app, &path_of(next)).await;
        assert!(page.get("previous").is_some());
    }
    assert_eq!(forward, seen);
}

#[tokio::test]
async fn before_and_after_are_exclusive_and_checked() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap();
    for i in 0..3 {
        app.post_message(id, "appUser", &format!("m{i}")).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let base = format!("/v1/appusers/{id}/conversation");
    let all = get(&app, &base).await;
    assert_eq!(texts(&all), ["m0", "m1", "m2"]);
    let t = received(&all);
    let before = get(&app, &format!("{base}?before={}", t[1])).await;
    assert_eq!(texts(&before), ["m0"]);
    assert!(before.get("previous").is_none());
    assert!(before.get("next").is_some());
    let after = get(&app, &format!("{base}?after={}", t[1])).await;
    assert_eq!(texts(&after), ["m2"]);
    assert!(after.get("previous").is_some());
    assert!(after.get("next").is_none());
    let nothing = get(&app, &format!("{base}?after={}", t[2])).await;
    assert_eq!(texts(&nothing), Vec::<String>::new());
    // The messages path pages the same way.
    let messages = get(&app, &format!("{base}/messages?before={}", t[2])).await;
    assert_eq!(texts(&messages), ["m0", "m1"]);

    for query in [
        format!("before={}&after={}", t[0], t[2]),
        "before=yesterday".to_owned(),
        "after=-1".to_owned(),
    ] {
        let (status, err) = suite()
            .call(
                Method::GET,
                &format!("{base}?{query}"),
                &app.app_token(),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {err}");
        let description = err["error"]["description"].as_str().unwrap();
        assert!(
            description.contains("before") || description.contains("after"),
            "{err}"
        );
    }
    let other = suite().create_app().await;
    let (status, _) = suite()
        .call(
            Method::GET,
            &format!("{base}?before={}", t[2]),
            &other.app_token(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
