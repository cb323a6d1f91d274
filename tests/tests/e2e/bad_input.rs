//! Bad input (issue 9): oversized and deeply nested bodies, invalid UTF-8, huge headers,
//! bodies that trickle in, path traversal in media paths and ids of every wrong shape. Each
//! is refused with the right status and the error shape, fast, and never a 5xx.

use std::time::{Duration, Instant};

use e2e::{suite, Auth};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn assert_error_shape(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["description"].is_string(), "{body}");
}

async fn raw_post(path: &str, auth: &Auth, body: Vec<u8>) -> (StatusCode, Value) {
    let request = suite()
        .request(Method::POST, path, auth)
        .header("content-type", "application/json")
        .body(body);
    e2e::parts(request.send().await.unwrap()).await
}

/// Sends `request` on a fresh connection and returns what the server answered before it
/// closed or `wait` passed.
async fn raw_exchange(base: &str, request: &[u8], wait: Duration) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything: that is fine.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn an_oversized_json_body_is_413_in_the_error_shape() {
    let app = suite().create_app().await;
    let text = "x".repeat(2 * 1024 * 1024);
    let body = serde_json::to_vec(&json!({"text": text, "role": "appUser"})).unwrap();
    let (status, body) = raw_post(
        "/v1/appusers/someone/conversation/messages",
        &app.app_token(),
        body,
    )
    .await;
    assert_error_shape(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn an_oversized_image_is_413_in_the_error_shape() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let form = reqwest::multipart::Form::new()
        .text("role", "appUser")
        .part(
            "source",
            reqwest::multipart::Part::bytes(vec![0u8; 11 * 1024 * 1024])
                .file_name("big.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let response = suite()
        .request(
            Method::POST,
            &format!(
                "/v1/appusers/{}/conversation/images",
                user["_id"].as_str().unwrap()
            ),
            &app.app_token(),
        )
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, body) = e2e::parts(response).await;
    assert_error_shape(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn deeply_nested_json_is_400_and_the_gateway_lives_on() {
    let app = suite().create_app().await;
    for depth in [200, 100_000] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            for body in [
                nested.clone(),
                format!("{{\"device\": {nested}}}"),
                format!(
                    "{{\"device\": {{\"id\": \"d\", \"platform\": \"ios\", \"info\": {nested}}}}}"
                ),
            ] {
                let (status, answer) =
                    raw_post("/v1/init", &app.app_token(), body.into_bytes()).await;
                assert_error_shape(status, &answer, StatusCode::BAD_REQUEST);
            }
        }
    }
    let (status, body) = suite()
        .call(Method::GET, "/healthz", &Auth::None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn invalid_utf8_bodies_and_nul_characters_are_400() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let path = format!(
        "/v1/appusers/{}/conversation/messages",
        user["_id"].as_str().unwrap()
    );
    let mut invalid = br#"{"role": "appUser", "text": "caf"#.to_vec();
    invalid.extend_from_slice(&[0xC3, 0x28, 0xFF, 0xFE]);
    invalid.extend_from_slice(br#""}"#);
    let (status, body) = raw_post(&path, &app.app_token(), invalid).await;
    assert_error_shape(status, &body, StatusCode::BAD_REQUEST);
    // A lone surrogate escape is not a character either.
    let surrogate = br#"{"role": "appUser", "text": "\ud800"}"#.to_vec();
    let (status, body) = raw_post(&path, &app.app_token(), surrogate).await;
    assert_error_shape(status, &body, StatusCode::BAD_REQUEST);
    // NUL is valid JSON but can be stored nowhere: refused at the door, never a 500.
    for body in [
        json!({"role": "appUser", "text": "a\u{0}b"}),
        json!({"role": "appUser", "text": "t", "metadata": {"k\u{0}": 1}}),
    ] {
        let (status, answer) =
            raw_post(&path, &app.app_token(), serde_json::to_vec(&body).unwrap()).await;
        assert_error_shape(status, &answer, StatusCode::BAD_REQUEST);
    }
    let init = json!({"device": {"id": "d\u{0}", "platform": "ios"}, "userId": "u\u{0}"});
    let (status, answer) = raw_post(
        "/v1/init",
        &app.app_token(),
        serde_json::to_vec(&init).unwrap(),
    )
    .await;
    assert_error_shape(status, &answer, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn invalid_utf8_and_nul_in_paths_are_client_errors_in_the_error_shape() {
    let app = suite().create_app().await;
    for path in [
        "/v1/appusers/%FF%FE",
        "/v1/appusers/%C3%28/conversation",
        "/v1/webhooks/%ED%A0%80",
    ] {
        let (status, body) = suite().call(Method::GET, path, &app.app_jwt(), None).await;
        assert_error_shape(status, &body, StatusCode::BAD_REQUEST);
    }
    for path in [
        "/v1/appusers/a%00b",
        "/v1/webhooks/%00",
        "/v1/whispers/x%00",
    ] {
        let (status, body) = suite().call(Method::GET, path, &app.app_jwt(), None).await;
        assert_error_shape(status, &body, StatusCode::NOT_FOUND);
    }
    // Raw bytes that are not UTF-8 in the request line: refused by the HTTP layer.
    let answer = raw_exchange(
        &suite().base,
        b"GET /v1/appusers/\xff\xfe HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
}

#[tokio::test]
async fn huge_headers_are_refused_quickly_not_hung() {
    let started = Instant::now();
    let big = "a".repeat(1024 * 1024);
    let request =
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\nconnection: close\r\n\r\n");
    let answer = raw_exchange(&suite().base, request.as_bytes(), Duration::from_secs(10)).await;
    assert!(
        answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.1 400"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    let many: String = (0..500).map(|i| format!("x-h{i}: v\r\n")).collect();
    let request = format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many}connection: close\r\n\r\n");
    let answer = raw_exchange(&suite().base, request.as_bytes(), Duration::from_secs(10)).await;
    assert!(
        answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    // A huge credential header through a real client: 431/400 or 401, never a 5xx.
    let app = suite().create_app().await;
    let response = suite()
        .request(
            Method::GET,
            "/v1/appusers/x",
            &Auth::AppToken("t".repeat(64 * 1024)),
        )
        .send()
        .await
        .unwrap();
    assert!(
        [431, 400, 401].contains(&response.status().as_u16()),
        "{}",
        response.status()
    );
    let response = suite()
        .request(
            Method::GET,
            "/v1/appusers/x",
            &Auth::AppToken("t".repeat(300)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    drop(app);
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_off_with_408() {
    let mut config = suite().gateway_config();
    config.body_timeout = Duration::from_millis(1_000);
    let (base, shutdown) = e2e::start_gateway(config).await;
    let app = suite().create_app().await;
    let addr = base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/init HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         app-token: {}\r\ncontent-length: 1000\r\n\r\n",
        app.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // One byte every 100 ms: 1000 bytes would take 100 s.
    while started.elapsed() < Duration::from_secs(10) {
        if stream.write_all(b" ").await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    let elapsed = started.elapsed();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    shutdown.cancel();
}

#[tokio::test]
async fn media_paths_cannot_climb_out_of_their_app() {
    let app = suite().create_app().await;
    for path in [
        format!("/media/{}/..%2F..%2F..%2Fetc%2Fpasswd", app.id),
        format!("/media/{}/%2e%2e%2f%2e%2e%2fetc%2fpasswd", app.id),
        format!("/media/{}/..%5C..%5Cwindows%5Cwin.ini", app.id),
        "/media/..%2F..%2Fetc/passwd".to_owned(),
        "/media/%2e%2e/%2e%2e".to_owned(),
        format!("/media/{}/.%00.png", app.id),
        format!("/media/{}/5f1c0e2b9a8d7c6b5a4f3e2d.png%00.txt", app.id),
        format!("/media/{}/{}", app.id, "a".repeat(4000)),
    ] {
        let (status, body) = suite().call(Method::GET, &path, &Auth::None, None).await;
        assert_error_shape(status, &body, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn ids_of_the_wrong_shape_are_404_never_500() {
    let app = suite().create_app().await;
    let long = "x".repeat(5000);
    let shapes = [
        "x",
        "5f1c0e2b9a8d7c6b5a4f3e2",
        "5F1C0E2B9A8D7C6B5A4F3E2D",
        "5f1c0e2b9a8d7c6b5a4f3e2d00",
        "zzzzzzzzzzzzzzzzzzzzzzzz",
        "'%20OR%201=1%20--",
        "%22%3B%20DROP%20TABLE%20apps%3B--",
        "%F0%9F%92%A9",
        "-1",
        "..",
        long.as_str(),
    ];
    let account = e2e::account_jwt();
    for id in shapes {
        for (method, path, auth) in [
            (Method::GET, format!("/v1/appusers/{id}"), app.app_jwt()),
            (
                Method::GET,
                format!("/v1/appusers/{id}/conversation"),
                app.app_token(),
            ),
            (Method::GET, format!("/v1/webhooks/{id}"), app.app_jwt()),
            (Method::DELETE, format!("/v1/webhooks/{id}"), app.app_jwt()),
            (
                Method::GET,
                format!("/v1/webhooks/{id}/deliveries"),
                app.app_jwt(),
            ),
            (
                Method::POST,
                format!("/v1/webhooks/{id}/deliveries/{id}/retry"),
                app.app_jwt(),
            ),
            (Method::GET, format!("/v1/whispers/{id}"), app.app_jwt()),
            (Method::GET, format!("/v1/apps/{id}"), account.clone()),
            (Method::GET, format!("/v1/apps/{id}/keys"), account.clone()),
            (
                Method::GET,
                format!("/v1/apps/{}/keys/{id}", app.id),
                account.clone(),
            ),
            (
                Method::DELETE,
                format!("/v1/apps/{id}/keys/{id}"),
                account.clone(),
            ),
            (Method::GET, format!("/media/{id}/{id}"), Auth::None),
        ] {
            let (status, body) = suite().call(method.clone(), &path, &auth, None).await;
            // `..` is resolved away by the client, leaving a route without the id.
            if id == ".." {
                assert!(status.is_client_error(), "{method} {path}: {status} {body}");
                continue;
            }
            assert_error_shape(status, &body, StatusCode::NOT_FOUND);
        }
    }
}

/// Found by the fuzzer: a cursor at the end of time overflowed the next page's link.
#[tokio::test]
async fn page_cursors_at_the_ends_of_time_are_pages_not_panics() {
    let app = suite().create_app().await;
    let user = app.init_user(None).await;
    let id = user["_id"].as_str().unwrap();
    app.post_message(id, "appUser", "hello").await;
    for query in [
        "after=9223372036854776.0",
        "after=1e300",
        "before=0",
        "before=1e300",
        "after=0.0000001",
    ] {
        let path = format!("/v1/appusers/{id}/conversation?{query}");
        let (status, body) = suite()
            .call(Method::GET, &path, &app.app_token(), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
    }
    for query in ["after=NaN", "before=-1", "after=inf", "after=1&before=2"] {
        let path = format!("/v1/appusers/{id}/conversation?{query}");
        let (status, body) = suite()
            .call(Method::GET, &path, &app.app_token(), None)
            .await;
        assert_error_shape(status, &body, StatusCode::BAD_REQUEST);
    }
}
