//! The service edges: the HTTP JSON shapes of the Smooch v1 API (and the bus event that
//! carries them), their conversions from the services' protobuf types, and the one mapping
//! between the domain error and `tonic::Status`. `domain` stays free of all of these.

pub mod event;
pub mod model;
pub mod status;

pub use status::{from_post_failure, status, to_post_failure, FromStatus, ToStatus};
