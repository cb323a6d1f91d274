//! The machine's Postgres, Redis and RabbitMQ, stopped and started by the fault tests, and
//! a guard that brings every one of them back up however a test ends.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The version directory of the Postgres cluster (`/etc/postgresql/<version>`).
fn postgres_version() -> String {
    std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut dir| dir.next())
        .and_then(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| "16".to_owned())
}

fn pg_ctlcluster(action: &str) -> bool {
    let version = postgres_version();
    run(
        "pg_ctlcluster",
        &[
            "--skip-systemctl-redirect",
            &version,
            "main",
            action,
            "-m",
            "fast",
        ],
    )
}

/// Whether Postgres accepts connections.
pub(crate) fn postgres_up() -> bool {
    run("pg_isready", &["-h", "127.0.0.1", "-p", "5432", "-t", "1"])
}

/// Stops Postgres (fast: open connections are cut).
pub(crate) fn postgres_stop() {
    assert!(pg_ctlcluster("stop"), "could not stop Postgres");
}

/// Starts Postgres if it is down.
pub(crate) fn postgres_start() {
    if !postgres_up() {
        pg_ctlcluster("start");
    }
    wait_for("Postgres", postgres_up);
}

/// Whether Redis answers PING.
pub(crate) fn redis_up() -> bool {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379", "ping"])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"PONG"))
}

/// Stops Redis without saving (it keeps nothing on disk here: a restart empties it).
pub(crate) fn redis_stop() {
    run(
        "redis-cli",
        &["-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"],
    );
    let start = Instant::now();
    while redis_up() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts Redis if it is down, as the machine's setup does.
pub(crate) fn redis_start() {
    if !redis_up() {
        run(
            "redis-server",
            &[
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "-::1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                "/var/lib/redis",
                "--logfile",
                "/var/log/redis/ci.log",
            ],
        );
    }
    wait_for("Redis", redis_up);
}

/// Whether the RabbitMQ application runs (the node may run with the app stopped).
pub(crate) fn rabbitmq_up() -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], 5672)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// Stops the RabbitMQ application: every connection drops, durable queues stay.
pub(crate) fn rabbitmq_stop() {
    assert!(run("rabbitmqctl", &["stop_app"]), "could not stop RabbitMQ");
}

/// Starts the RabbitMQ application (starting the node first if it is down).
pub(crate) fn rabbitmq_start() {
    if !rabbitmq_up() && !run("rabbitmqctl", &["start_app"]) {
        run("rabbitmq-server", &["-detached"]);
        std::thread::sleep(Duration::from_secs(5));
        run("rabbitmqctl", &["start_app"]);
    }
    wait_for("RabbitMQ", rabbitmq_up);
}

fn wait_for(what: &str, up: fn() -> bool) {
    let start = Instant::now();
    while !up() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not come back within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Brings Postgres, Redis and RabbitMQ back up when dropped, even when a test panics
/// halfway through a fault.
pub(crate) struct DependencyGuard;

impl Drop for DependencyGuard {
    fn drop(&mut self) {
        // Each independently: one failing must not keep the others down.
        let steps: [(&str, fn()); 3] = [
            ("RabbitMQ", rabbitmq_start),
            ("Redis", redis_start),
            ("Postgres", postgres_start),
        ];
        for (what, start) in steps {
            if std::panic::catch_unwind(start).is_err() {
                eprintln!("fault tests: could not bring {what} back up");
            }
        }
    }
}
