//! Operating the suite: metrics and trace propagation seen from outside.

use e2e::{suite, Auth};
use reqwest::{Method, StatusCode};

/// The sum of the samples of `page` whose line starts with `name` and holds every label.
pub(crate) fn sample(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The suite's `/metrics` page, checked to be Prometheus text.
pub(crate) async fn metrics() -> String {
    let response = suite()
        .request(Method::GET, "/metrics", &Auth::None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_parse_and_move_when_traffic_flows() {
    let app = suite().create_app().await;
    let before = metrics().await;
    let route = r#"route="/v1/init""#;
    let count_before = sample(&before, "http_requests_total", &[route, r#"status="200""#]);
    for _ in 0..3 {
        app.init_user(None).await;
    }
    let after = metrics().await;
    let count_after = sample(&after, "http_requests_total", &[route, r#"status="200""#]);
    assert!(
        count_after >= count_before + 3.0,
        "{count_before} -> {count_after}"
    );
    // Every sample line is `name{labels} value`, as Prometheus parses it.
    for line in after
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "unparsable sample: {line}");
    }
    assert!(sample(&after, "grpc_server_requests_total", &["Users/Init"]) >= 3.0);
    assert!(after.contains("http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn an_incoming_traceparent_is_continued() {
    let app = suite().create_app().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = suite()
        .request(Method::POST, "/v1/init", &app.app_token())
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({"device": {"id": "traced", "platform": "web"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-trace-id"], trace);
    let other = suite()
        .request(Method::GET, "/healthz", &Auth::None)
        .send()
        .await
        .unwrap();
    let id = other.headers()["x-trace-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_ne!(id, trace);
    assert_ne!(id, "00000000000000000000000000000000");
}

#[tokio::test]
async fn one_posted_message_is_one_trace_across_the_gateway_and_the_services() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let trace = domain::id::new_secret(16);
    let response = suite()
        .request(
            Method::POST,
            &format!(
                "/v1/appusers/{}/conversation/messages",
                user["_id"].as_str().unwrap()
            ),
            &app.app_token(),
        )
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({"text": "traced", "role": "appUser"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let wanted = [
        "POST /v1/appusers/{id}/conversation/messages",
        "/smooch.v1.Users/GetAppUser",
        "/smooch.v1.Conversations/PostMessage",
    ];
    let mut names = Vec::new();
    for _ in 0..100 {
        names = e2e::otlp::trace(&trace)
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<_>>();
        if wanted.iter().all(|w| names.iter().any(|n| n == w)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for w in wanted {
        assert!(
            names.iter().any(|n| n == w),
            "no {w:?} span in trace {trace}: {names:?}"
        );
    }
}
