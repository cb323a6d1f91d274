//! Generated protobuf types and tonic clients and servers for every smooch service, and
//! the handles that call a service over the network or in this process.
#![allow(unreachable_pub, missing_docs, clippy::all)]

/// `smooch.v1`: the services' wire types.
pub mod v1 {
    tonic::include_proto!("smooch.v1");
}

pub mod local;
