//! End-to-end tests: the public HTTP API of a suite started in-process by the testkit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod actions;
mod app_config;
mod apps;
mod appusers;
mod attacks;
mod auth;
mod bad_input;
mod conversation;
mod credentials;
mod delivery;
mod devices;
mod faye;
mod idempotency;
mod images;
mod isolation;
mod merge;
mod openapi;
mod operations;
mod pagination;
mod ratelimits;
mod read;
mod shutdown;
mod webhooks;
mod whispers;
mod wire;
