//! Integration tests of the conversations service: each test starts the service on a free
//! port against the test database and drives it with the generated gRPC client, in an app
//! of its own so tests run in parallel.

#![allow(clippy::unwrap_used)]

mod events;
mod get_conversation;
mod handoff;
mod helpers;
mod lane;
mod outbox;
mod pagination;
mod post_message;
mod track_event;
mod writer;
