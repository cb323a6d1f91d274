//! The era's official clients, unchanged, against the suite: npm `smooch-core` 1.1.2, 2.1.0
//! and 3.5.0 and PyPI `python-smooch` 1.0.4 (installed into tests/clients by
//! scripts/clients-up.sh). Each runs a scenario of its own public API against a fresh app
//! (tests/clients/smooch-core.js, tests/clients/python_smooch.py), including calls with
//! another app's key that must be refused, and prints `OK <step>` per step.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use e2e::{suite, TestApp, ACCOUNT_KEY_ID, ACCOUNT_SECRET};
use tokio::process::Command;

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Runs `program args` in tests/clients with the credentials of two fresh apps, and
/// asserts it ran every step.
async fn drive(program: &str, args: &[&str], extra: &[(&str, &str)]) {
    let s = suite();
    let app: TestApp = s.create_app().await;
    let other: TestApp = s.create_app().await;
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(clients_dir())
        .env("BASE", &s.base)
        .env("APP_ID", &app.id)
        .env("APP_TOKEN", &app.token)
        .env("KEY_ID", &app.key_id)
        .env("SECRET", &app.secret)
        .env("OTHER_APP_ID", &other.id)
        .env("OTHER_KEY_ID", &other.key_id)
        .env("OTHER_SECRET", &other.secret)
        .env("ACCOUNT_KEY_ID", ACCOUNT_KEY_ID)
        .env("ACCOUNT_SECRET", ACCOUNT_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra {
        command.env(k, v);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the client finished within 60 s")
        .unwrap_or_else(|e| panic!("{program} runs (scripts/clients-up.sh installs it): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().any(|l| l == "DONE"),
        "{program} {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.lines().filter(|l| l.starts_with("OK ")).count() >= 4,
        "too few steps ran:\n{stdout}"
    );
}

async fn smooch_core(version: &str) {
    assert!(
        clients_dir().join("node_modules/smooch-core-3").exists(),
        "the clients are not installed: run scripts/clients-up.sh"
    );
    drive("node", &["smooch-core.js"], &[("SMOOCH_CORE", version)]).await;
}

#[tokio::test]
async fn smooch_core_1_1_2() {
    smooch_core("1").await;
}

#[tokio::test]
async fn smooch_core_2_1_0() {
    smooch_core("2").await;
}

#[tokio::test]
async fn smooch_core_3_5_0() {
    smooch_core("3").await;
}

#[tokio::test]
async fn python_smooch_1_0_4() {
    let python = clients_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "python-smooch is not installed: run scripts/clients-up.sh"
    );
    drive(
        python.to_str().expect("a UTF-8 path"),
        &["python_smooch.py"],
        &[],
    )
    .await;
}
