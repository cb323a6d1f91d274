//! The shared model of the smooch suite: ids, timestamps, validation rules and the
//! error type whose codes know their HTTP status. Pure: no proto, transport or HTTP types;
//! the wire shapes and the gRPC mapping live in the `wire` crate.

pub mod app_config;
pub mod config;
pub mod error;
pub mod id;
pub mod net;
pub mod time;
pub mod validate;

pub use error::{Error, ErrorCode, Result};
pub use id::{AppId, AppUserId, ConversationId, MessageId, UserId};
