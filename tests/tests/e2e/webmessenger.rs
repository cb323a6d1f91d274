//! The era's Web Messenger (npm `smooch` 3.9.3), unchanged, in headless Chromium against the
//! suite: `tests/browser/webmessenger.js` (installed and bundled by scripts/browser-up.sh)
//! starts it on a page of its own origin, sends a message from the widget's text box, and
//! sees the app maker's typing indicator and reply arrive live over `/faye`; the same userId
//! in another app is another user, who neither reads nor receives any of it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use e2e::{suite, unique};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// A `webmessenger.js` run: its stdin (to say `REPLIED`) and its stdout lines.
struct Driver {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Driver {
    fn spawn(envs: &[(&str, &str)]) -> Driver {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser");
        assert!(
            dir.join("node_modules/playwright-core").exists()
                && dir.join("build/smooch.js").exists(),
            "the Web Messenger bundle is not built: run scripts/browser-up.sh"
        );
        let mut child = Command::new("node")
            .arg(dir.join("webmessenger.js"))
            .envs(envs.iter().copied())
            .env("WM_TIMEOUT_MS", "90000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Driver {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line, which must start with `prefix`; answers the rest of it.
    async fn expect(&mut self, prefix: &str) -> String {
        let line = tokio::time::timeout(Duration::from_secs(90), self.lines.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("no {prefix} within 90 s; so far:\n{}", self.seen.join("\n"))
            })
            .unwrap_or_else(|| "EXITED".to_owned());
        self.seen.push(line.clone());
        assert!(
            line.starts_with(prefix),
            "expected {prefix}, got {line}; so far:\n{}",
            self.seen.join("\n")
        );
        line[prefix.len()..].trim().to_owned()
    }

    async fn say(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("writing to the driver");
        self.stdin
            .flush()
            .await
            .expect("flushing the driver's stdin");
    }
}

#[tokio::test]
async fn webmessenger_sends_and_receives_live_in_chromium() {
    let s = suite();
    let app = s.create_app().await;
    let other = s.create_app().await;
    let user_id = unique("wm-user");
    let text = format!("Hello from the widget {}", domain::id::new_id());
    let second = format!("Anyone there? {}", domain::id::new_id());
    let reply = format!("Hi! How can I help? {}", domain::id::new_id());
    let mut driver = Driver::spawn(&[
        ("WM_BASE", s.base.as_str()),
        ("WM_APP_TOKEN", app.token.as_str()),
        ("WM_USER_ID", user_id.as_str()),
        ("WM_TEXT", text.as_str()),
        ("WM_SECOND_TEXT", second.as_str()),
        ("WM_EXPECT", reply.as_str()),
        ("WM_OTHER_APP_TOKEN", other.token.as_str()),
    ]);

    // Init made a new user in this app, whose conversation has not started.
    let ready = driver.expect("READY ").await;
    let (app_user_id, started) = ready.split_once(' ').expect("READY <id> <started>");
    assert_eq!(started, "false");
    let app_jwt = app.app_jwt();
    let (status, body) = s
        .call(
            Method::GET,
            &format!("/v1/appusers/{user_id}"),
            &app_jwt,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["appUser"]["_id"], app_user_id);
    let device = &body["appUser"]["devices"][0];
    assert_eq!(device["platform"], "web", "{body}");
    let source = json!({"type": "web", "id": device["id"]});

    // What the user typed reached the conversation, from the widget's device.
    assert_eq!(driver.expect("SENT ").await, text);
    assert_eq!(driver.expect("SENT ").await, second);
    let (status, body) = s
        .call(
            Method::GET,
            &format!("/v1/appusers/{app_user_id}/conversation"),
            &app_jwt,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let messages: Vec<_> = body["conversation"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].clone(), m["text"].clone(), m["source"].clone()))
        .collect();
    assert_eq!(
        messages,
        vec![
            (json!("appUser"), json!(text), source.clone()),
            (json!("appUser"), json!(second), source),
        ],
        "{body}"
    );

    // The other app's widget, same userId: another user with a conversation of its own, and
    // this one's conversation is not found with its token.
    driver.expect("OTHER READY").await;
    assert_eq!(driver.expect("OTHER_READ ").await, "404");
    let (status, body) = s
        .call(
            Method::GET,
            &format!("/v1/appusers/{user_id}/conversation"),
            &other.app_jwt(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(body["conversation"]["appUsers"][0], app_user_id, "{body}");
    assert_eq!(
        body["conversation"]["messages"].as_array().unwrap().len(),
        1
    );
    driver.expect("WAITING").await;

    // The app maker types, then answers; the widget shows both without a reload.
    let (status, body) = s
        .call(
            Method::POST,
            &format!("/v1/appusers/{app_user_id}/conversation/activity"),
            &app_jwt,
            Some(json!({"role": "appMaker", "type": "typing:start", "data": {"name": "Ann"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    driver.say("REPLIED").await;
    driver.expect("TYPING").await;
    app.post_message(app_user_id, "appMaker", &reply).await;
    assert_eq!(driver.expect("RECEIVED ").await, reply);
    // The echo of its own second message over /faye was recognised: each shows once.
    assert_eq!(driver.expect("SHOWN ").await, "2");

    // Nothing reached the other app's widget, subscribed to its own conversation meanwhile.
    assert_eq!(driver.expect("OTHER_SAW ").await, "0");
    driver.expect("DONE").await;
    let status = tokio::time::timeout(Duration::from_secs(30), driver.child.wait())
        .await
        .expect("the driver did not exit")
        .expect("waiting for node");
    assert!(status.success(), "driver failed ({status})");
}
