//! The shared model of the smooch suite: ids, timestamps, validation rules and the
//! error type whose codes map onto both HTTP and gRPC.

pub mod app_config;
pub mod config;
pub mod error;
pub mod event;
pub mod id;
pub mod model;
pub mod net;
pub mod time;
pub mod validate;

pub use error::{Error, ErrorCode, Result};
