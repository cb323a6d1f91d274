//! Integration tests of the media service: each test starts the service on a free port
//! with a media directory of its own and drives it with the generated gRPC client.

#![allow(clippy::unwrap_used)]

mod download;
mod helpers;
mod images;
mod upload;
