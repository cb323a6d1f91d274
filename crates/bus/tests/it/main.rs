//! Integration tests of the bus against the real RabbitMQ and Postgres: each test has its
//! own AMQP prefix and its own outbox schema.

#![allow(clippy::unwrap_used)]

mod helpers;
mod relay;
