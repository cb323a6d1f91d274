//! End-to-end tests: the public HTTP API of a suite started in-process by the testkit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod actions;
mod apps;
mod appusers;
mod auth;
mod conversation;
mod devices;
mod images;
mod merge;
mod pagination;
mod read;
mod webhooks;
mod whispers;
mod wire;
