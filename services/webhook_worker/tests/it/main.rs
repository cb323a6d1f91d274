//! Integration tests of the webhook worker against the real RabbitMQ, Postgres and the
//! webhooks service, with a local HTTP sink as the target. Each test has its own AMQP
//! prefix and its own app.

#![allow(clippy::unwrap_used)]

mod circuits;
mod delivery;
mod handoff;
mod helpers;
mod retries;
mod scaling;
