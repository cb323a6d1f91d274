//! Calls to a service of this process (`smooch all`) through its handle: the generated
//! `<Service>Handle::Local` calls the service's method directly, with no encoding, no
//! HTTP/2 and no trace headers to write and read back, and keeps what a served call has:
//! a `grpc.server` span (a child of the caller's span, in the same trace), the
//! `grpc_server_*` metrics, and the caller's timeout.

// The crate allows clippy's lints for its generated code; this module is not generated.
#![warn(clippy::all)]

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tracing::Instrument as _;

/// A service ready to serve: its `routes` (for its listener and the in-process channel)
/// and the service itself, for the handles of this process.
pub struct Served<L: ?Sized> {
    /// The gRPC routes, health included.
    pub routes: tonic::service::Routes,
    /// The service, called directly by local handles.
    pub local: std::sync::Arc<L>,
}

/// A service of this process, held by the configuration of the roles that call it
/// locally (a trait object, which shows only its type when printed).
pub struct LocalService<L: ?Sized>(pub std::sync::Arc<L>);

impl<L: ?Sized> Clone for LocalService<L> {
    fn clone(&self) -> Self {
        LocalService(self.0.clone())
    }
}

impl<L: ?Sized> std::fmt::Debug for LocalService<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalService<{}>", std::any::type_name::<L>())
    }
}

/// The future of a service method.
pub type LocalFuture<'a, R> =
    Pin<Box<dyn Future<Output = Result<tonic::Response<R>, tonic::Status>> + Send + 'a>>;

/// The span of one served call of `method` (`/package.Service/Method`), as the network
/// server's telemetry and the local calls make it.
pub fn server_span(method: &str) -> tracing::Span {
    tracing::info_span!(
        "grpc.server",
        otel.name = %method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
    )
}

/// Counts a served call of `method` that ended with `code` after `elapsed`.
pub fn record(
    method: impl Into<metrics::SharedString>,
    code: impl Into<metrics::SharedString>,
    elapsed: Duration,
) {
    let method = method.into();
    metrics::counter!("grpc_server_requests_total", "method" => method.clone(), "code" => code)
        .increment(1);
    metrics::histogram!("grpc_server_request_duration_seconds", "method" => method)
        .record(elapsed.as_secs_f64());
}

/// The `grpc-status` of a result, as the network server's telemetry labels it.
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "0",
        Code::Cancelled => "1",
        Code::Unknown => "2",
        Code::InvalidArgument => "3",
        Code::DeadlineExceeded => "4",
        Code::NotFound => "5",
        Code::AlreadyExists => "6",
        Code::PermissionDenied => "7",
        Code::ResourceExhausted => "8",
        Code::FailedPrecondition => "9",
        Code::Aborted => "10",
        Code::OutOfRange => "11",
        Code::Unimplemented => "12",
        Code::Internal => "13",
        Code::Unavailable => "14",
        Code::DataLoss => "15",
        Code::Unauthenticated => "16",
    }
}

/// Runs `call`, the local service's answer to `method`, inside its `grpc.server` span,
/// cut off after `timeout` as a network call would be (UNAVAILABLE, which callers treat
/// as a transport failure), and counts it.
pub async fn call<R>(
    method: &'static str,
    timeout: Duration,
    call: impl Future<Output = Result<tonic::Response<R>, tonic::Status>>,
) -> Result<tonic::Response<R>, tonic::Status> {
    call_in(server_span(method), method, timeout, call).await
}

/// [`call`] inside `span`, made by [`server_span`] and given a parent by the caller (a
/// call carried with its trace context, as the post lane carries posts).
pub async fn call_in<R>(
    span: tracing::Span,
    method: &'static str,
    timeout: Duration,
    call: impl Future<Output = Result<tonic::Response<R>, tonic::Status>>,
) -> Result<tonic::Response<R>, tonic::Status> {
    let started = Instant::now();
    let result = match tokio::time::timeout(timeout, call)
        .instrument(span.clone())
        .await
    {
        Ok(result) => result,
        Err(_) => Err(tonic::Status::unavailable(format!(
            "{method} took longer than {} ms in this process",
            timeout.as_millis()
        ))),
    };
    let code = code_label(match &result {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    });
    span.record("rpc.grpc.status_code", code);
    record(method, code, started.elapsed());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_call_answers_and_is_cut_off_after_its_timeout() {
        let answered = call("/t.T/Ok", Duration::from_secs(1), async {
            Ok(tonic::Response::new(7))
        })
        .await
        .expect("answered");
        assert_eq!(answered.into_inner(), 7);
        let status = call("/t.T/Slow", Duration::from_millis(10), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(tonic::Response::new(()))
        })
        .await
        .expect_err("cut off");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            status.message(),
            "/t.T/Slow took longer than 10 ms in this process"
        );
        let failed = call("/t.T/NotFound", Duration::from_secs(1), async {
            Err::<tonic::Response<()>, _>(tonic::Status::not_found("no such thing"))
        })
        .await
        .expect_err("the service's answer");
        assert_eq!(failed.code(), tonic::Code::NotFound);
        assert_eq!(code_label(tonic::Code::Unauthenticated), "16");
    }
}
