//! Generated protobuf types and tonic clients and servers for every smooch service.
#![allow(unreachable_pub, missing_docs, clippy::all)]

/// `smooch.v1`: the services' wire types.
pub mod v1 {
    tonic::include_proto!("smooch.v1");
}
