//! The one mapping between the domain [`Error`] and `tonic::Status`: services answer a
//! failed call with [`status`] (or [`ToStatus::to_status`]), the gateway and other callers
//! turn a `Status` back with [`FromStatus::from_status`], so both hops keep the exact code.
//!
//! `From<domain::Error> for tonic::Status` cannot live here (neither type is ours), so a
//! handler that fails with a domain error says so: `.map_err(wire::status)?`.

use domain::{Error, ErrorCode};

/// Metadata key that carries the machine code across gRPC.
pub const CODE_METADATA_KEY: &str = "smooch-error-code";

/// The gRPC code of an [`ErrorCode`].
pub fn grpc_code(code: ErrorCode) -> tonic::Code {
    match code {
        ErrorCode::BadRequest | ErrorCode::UnsupportedMediaType | ErrorCode::MethodNotAllowed => {
            tonic::Code::InvalidArgument
        }
        ErrorCode::Unauthorized => tonic::Code::Unauthenticated,
        ErrorCode::Forbidden => tonic::Code::PermissionDenied,
        ErrorCode::NotFound => tonic::Code::NotFound,
        ErrorCode::Conflict => tonic::Code::AlreadyExists,
        ErrorCode::RequestTimeout => tonic::Code::DeadlineExceeded,
        ErrorCode::PayloadTooLarge => tonic::Code::OutOfRange,
        ErrorCode::TooManyRequests => tonic::Code::ResourceExhausted,
        ErrorCode::Internal => tonic::Code::Internal,
        ErrorCode::Unavailable => tonic::Code::Unavailable,
    }
}

/// The [`ErrorCode`] for a gRPC status that carries no machine code of ours (a transport
/// failure, say).
pub fn code_from_grpc(code: tonic::Code) -> ErrorCode {
    match code {
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => ErrorCode::BadRequest,
        tonic::Code::Unauthenticated => ErrorCode::Unauthorized,
        tonic::Code::PermissionDenied => ErrorCode::Forbidden,
        tonic::Code::NotFound => ErrorCode::NotFound,
        tonic::Code::AlreadyExists => ErrorCode::Conflict,
        tonic::Code::OutOfRange => ErrorCode::PayloadTooLarge,
        tonic::Code::ResourceExhausted => ErrorCode::TooManyRequests,
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            ErrorCode::Unavailable
        }
        _ => ErrorCode::Internal,
    }
}

/// The gRPC status carrying `err`, machine code included; for `.map_err(wire::status)`.
pub fn status(err: Error) -> tonic::Status {
    err.to_status()
}

/// Turns a domain error into the gRPC status that carries it.
pub trait ToStatus {
    /// The gRPC status carrying this error, code included.
    fn to_status(&self) -> tonic::Status;
}

impl ToStatus for Error {
    fn to_status(&self) -> tonic::Status {
        let mut status = tonic::Status::new(grpc_code(self.code), self.description.clone());
        status.metadata_mut().insert(
            CODE_METADATA_KEY,
            tonic::metadata::MetadataValue::from_static(self.code.as_str()),
        );
        status
    }
}

/// Turns a gRPC status back into the domain error it stands for.
pub trait FromStatus {
    /// The error a gRPC status stands for. Statuses without our machine code (transport
    /// failures, a peer that is down) keep their description only when it is safe to show.
    fn from_status(status: &tonic::Status) -> Self;
}

impl FromStatus for Error {
    fn from_status(status: &tonic::Status) -> Self {
        let ours = status
            .metadata()
            .get(CODE_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(ErrorCode::parse);
        let unavailable = || Error::unavailable("A backing service is unavailable; retry later.");
        match ours {
            Some(code) => Error::new(code, status.message()),
            // A status with an underlying error and none of our codes was made by the transport,
            // not by a service: the call was cut off (the service died or is shutting down and
            // reset the stream). Whatever its code (Unknown, Internal for an h2 reset, ...),
            // the service may answer a retry in a moment.
            None if std::error::Error::source(status).is_some() => unavailable(),
            None => match code_from_grpc(status.code()) {
                ErrorCode::Unavailable => unavailable(),
                _ => Error::internal(),
            },
        }
    }
}

/// A failed call as the post lane carries it: the status's code, message and machine code.
pub fn to_post_failure(status: &tonic::Status) -> proto::v1::PostFailure {
    proto::v1::PostFailure {
        code: status.code() as i32,
        message: status.message().to_owned(),
        error_code: status
            .metadata()
            .get(CODE_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The status a post lane's failure stands for, as the unary call would have answered it.
pub fn from_post_failure(failure: proto::v1::PostFailure) -> tonic::Status {
    let mut status = tonic::Status::new(tonic::Code::from_i32(failure.code), failure.message);
    let code = (!failure.error_code.is_empty())
        .then(|| tonic::metadata::MetadataValue::try_from(failure.error_code.as_str()).ok())
        .flatten();
    if let Some(code) = code {
        status.metadata_mut().insert(CODE_METADATA_KEY, code);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_survives_the_post_lane() {
        for code in ErrorCode::ALL {
            let err = Error::new(code, "why");
            let back = Error::from_status(&from_post_failure(to_post_failure(&err.to_status())));
            assert_eq!(back, err);
        }
        // A status with no machine code of ours stays without one.
        let bare = from_post_failure(to_post_failure(&tonic::Status::unavailable("down")));
        assert_eq!(bare.code(), tonic::Code::Unavailable);
        assert!(bare.metadata().get(CODE_METADATA_KEY).is_none());
        assert_eq!(Error::from_status(&bare).code, ErrorCode::Unavailable);
    }

    #[test]
    fn every_code_survives_a_grpc_round_trip() {
        for code in ErrorCode::ALL {
            let err = Error::new(code, "why");
            let back = Error::from_status(&err.to_status());
            assert_eq!(back, err);
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
    }

    #[test]
    fn calls_cut_off_in_transport_are_unavailable_whatever_their_code() {
        for code in [tonic::Code::Internal, tonic::Code::Unknown] {
            let mut status = tonic::Status::new(code, "h2 protocol error: http2 error");
            status.set_source(std::sync::Arc::new(std::io::Error::other("stream reset")));
            assert_eq!(Error::from_status(&status).code, ErrorCode::Unavailable);
        }
    }

    #[test]
    fn foreign_statuses_do_not_leak_their_message() {
        let back = Error::from_status(&tonic::Status::internal("db password is hunter2"));
        assert_eq!(back.code, ErrorCode::Internal);
        assert!(!back.description.contains("hunter2"));
        let down = Error::from_status(&tonic::Status::unavailable("tcp connect error"));
        assert_eq!(down.code, ErrorCode::Unavailable);
    }
}
