//! End-to-end tests: the public HTTP API of a suite started in-process by the testkit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apps;
mod appusers;
mod auth;
mod conversation;
mod images;
mod webhooks;
mod wire;
