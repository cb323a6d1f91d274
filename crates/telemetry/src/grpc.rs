//! gRPC telemetry: a tower layer for tonic servers that continues the caller's trace and
//! records request counts and latency by method and status, and an interceptor for tonic
//! clients that sends the current trace context in the request metadata.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::propagation::Injector;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::propagation;

/// Layer for `tonic::transport::Server::builder().layer(..)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerLayer;

impl<S> tower::Layer<S> for ServerLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace { inner }
    }
}

/// The service [`ServerLayer`] wraps around a gRPC server.
#[derive(Debug, Clone)]
pub struct ServerTrace<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for ServerTrace<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let span = proto::local::server_span(&method);
        propagation::set_parent_from_headers(&span, request.headers());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let result = future.await;
                // Unary errors come back "trailers-only", with grpc-status in the headers;
                // a success carries it in the trailers, so no header means OK.
                let code = match &result {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("0")
                        .to_owned(),
                    Err(_) => "transport".to_owned(),
                };
                tracing::Span::current().record("rpc.grpc.status_code", code.as_str());
                proto::local::record(method, code, started.elapsed());
                result
            }
            .instrument(span),
        )
    }
}

struct MetadataCarrier<'a>(&'a mut MetadataMap);

impl Injector for MetadataCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Client interceptor that sends the current span's trace context with every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct InjectContext;

impl tonic::service::Interceptor for InjectContext {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let cx = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut MetadataCarrier(request.metadata_mut()));
        });
        Ok(request)
    }
}

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A transport error of a [`GrpcChannel`] (the connection failed, the call timed out). A
/// concrete type rather than a boxed trait object, which the generated clients' bounds
/// cannot always see through inside `async` trait methods.
#[derive(Debug)]
pub struct TransportError(BoxError);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// What the generated gRPC clients call through: a network channel to another process, or
/// the service itself in this process (as `smooch all` runs it), with the same trace
/// propagation and server telemetry either way.
pub type GrpcChannel = tower::util::BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    TransportError,
>;

/// The URL of a gRPC address given as `host:port` or as a URL (`http://host:port`).
pub fn url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// Splits a gRPC address, `host:port` (optionally behind `http://`), into its parts.
pub fn host_port(addr: &str) -> anyhow::Result<(String, u16)> {
    use anyhow::Context as _;
    let bare = addr
        .split("://")
        .last()
        .unwrap_or(addr)
        .trim_end_matches('/');
    let (host, port) = bare
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("gRPC address {addr:?} must be host:port"))?;
    let port = port
        .parse()
        .with_context(|| format!("gRPC address {addr:?} has a malformed port"))?;
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

/// A network channel that sends the current trace context with every call, and ends a
/// request's stream on its last data frame (`EndsWithLastFrame`).
pub fn network(channel: tonic::transport::Channel) -> GrpcChannel {
    use tower::ServiceExt as _;
    tower::util::BoxCloneSyncService::new(
        tonic::service::interceptor::InterceptedService::new(channel, InjectContext)
            .map_request(|request: http::Request<tonic::body::Body>| {
                request.map(|body| tonic::body::Body::new(EndsWithLastFrame::new(body)))
            })
            .map_response(|response| response.map(tonic::body::Body::new))
            .map_err(|e| TransportError(e.into())),
    )
}

/// A body that looks one frame ahead, so that it knows it has ended as soon as its last
/// frame is taken: HTTP/2 then sends that frame with END_STREAM.
///
/// tonic's request body learns it has ended only when polled after its last message. Sent
/// as it is, a unary call ends with an empty DATA frame of its own: one more write for the
/// caller, and one more read and wake-up for the server, on every call.
struct EndsWithLastFrame<B: http_body::Body> {
    inner: B,
    /// The frame taken when looking ahead, answered by the next poll.
    ahead: Option<Result<http_body::Frame<B::Data>, B::Error>>,
    /// The inner body answered `None`.
    ended: bool,
}

impl<B: http_body::Body> EndsWithLastFrame<B> {
    /// Wraps `inner`.
    fn new(inner: B) -> Self {
        EndsWithLastFrame {
            inner,
            ahead: None,
            ended: false,
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for EndsWithLastFrame<B>
where
    B::Data: Unpin,
    B::Error: Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = match this.ahead.take() {
            Some(frame) => frame,
            None if this.ended => return Poll::Ready(None),
            None => match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(frame)) => frame,
                Poll::Ready(None) => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            },
        };
        // Look ahead after data only: an error or trailers end the body anyway. A pending
        // inner body has registered the waker and is polled again later.
        if frame.as_ref().is_ok_and(http_body::Frame::is_data) {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(next)) => this.ahead = Some(next),
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => {}
            }
        }
        Poll::Ready(Some(frame))
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_none() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.ahead {
            // What is left is the frame ahead and the rest: no exact size is known.
            Some(_) => http_body::SizeHint::default(),
            None if self.ended => http_body::SizeHint::with_exact(0),
            None => self.inner.size_hint(),
        }
    }
}

/// A lazily connected network channel to the gRPC service `service` at `addr`
/// (`host:port` or a URL), for the rare calls one service makes to another.
pub fn lazy(addr: &str, service: &str) -> anyhow::Result<GrpcChannel> {
    use anyhow::Context as _;
    let channel = tonic::transport::Endpoint::from_shared(url(addr))
        .with_context(|| format!("malformed {service} address {addr:?}"))?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(network(channel))
}

/// The services of `routes` called in this process: no socket, no HTTP/2, each call still a
/// `grpc.server` span (continuing the caller's trace) with its metrics, and cut off after
/// `timeout` as a network call would be.
pub fn in_process(routes: tonic::service::Routes, timeout: std::time::Duration) -> GrpcChannel {
    use tower::ServiceExt;
    let server = tower::ServiceBuilder::new()
        .layer(ServerLayer)
        .service(routes.prepare());
    type Request = http::Request<tonic::body::Body>;
    let traced = tonic::service::interceptor::InterceptedService::new(server, InjectContext);
    let traced = ServiceExt::<Request>::map_response(traced, |response| {
        response.map(tonic::body::Body::new)
    });
    let traced =
        ServiceExt::<Request>::map_err(traced, |never: std::convert::Infallible| -> BoxError {
            match never {}
        });
    let timed = tower::ServiceBuilder::new()
        .timeout(timeout)
        .service(traced);
    tower::util::BoxCloneSyncService::new(ServiceExt::<Request>::map_err(timed, TransportError))
}

/// Serves `routes` on `listener` until `shutdown` is cancelled, as every gRPC role does: the
/// [`ServerLayer`] telemetry, `timeout` per call, and TCP_NODELAY (without it small gRPC
/// frames wait on Nagle for tens of milliseconds).
pub async fn serve(
    routes: tonic::service::Routes,
    listener: tokio::net::TcpListener,
    timeout: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .layer(ServerLayer)
        .timeout(timeout)
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
        .map_err(anyhow::Error::from)
}

/// How long a call to a gRPC role may take ([`serve_role`]).
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs a gRPC role: builds its `routes` (their background work on the role's
/// [`tasks::Tasks`], tied to `shutdown`), serves them on `listener` ([`serve`], 30 s per
/// call) until `shutdown`, and returns once the server and every task have ended.
pub async fn serve_role<F, Fut>(
    name: &'static str,
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
    routes: F,
) -> anyhow::Result<()>
where
    F: FnOnce(tasks::Tasks) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<tonic::service::Routes>>,
{
    use anyhow::Context as _;
    let tasks = tasks::Tasks::new(shutdown.child_token());
    let served = async {
        let routes = routes(tasks.clone()).await?;
        tracing::info!(service = name, addr = %listener.local_addr()?, "{name} service listening");
        serve(routes, listener, CALL_TIMEOUT, tasks.shutdown().clone())
            .await
            .with_context(|| format!("{name} gRPC server failed"))
    };
    let served = served.await;
    tasks.finish(served).await
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::VecDeque;

    use http_body::{Body as _, Frame};

    type Polled = Poll<Option<Result<Frame<&'static [u8]>, std::convert::Infallible>>>;

    /// A body that answers the polls it is given, and never knows it has ended, as tonic's
    /// encoder does not.
    struct Scripted(VecDeque<Polled>);

    impl http_body::Body for Scripted {
        type Data = &'static [u8];
        type Error = std::convert::Infallible;

        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Polled {
            self.get_mut().0.pop_front().unwrap_or(Poll::Ready(None))
        }
    }

    fn data(bytes: &'static [u8]) -> Polled {
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }

    /// Polls `body` once: what it answered (`data`, `trailers`, `pending` or `end`) and
    /// whether it then says it has ended.
    fn step(body: &mut EndsWithLastFrame<Scripted>) -> (String, bool) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let answered = match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) if frame.is_data() => {
                let bytes = frame.into_data().unwrap_or_default();
                format!("data {}", String::from_utf8_lossy(bytes))
            }
            Poll::Ready(Some(Ok(_))) => "trailers".to_owned(),
            Poll::Ready(Some(Err(never))) => match never {},
            Poll::Ready(None) => "end".to_owned(),
            Poll::Pending => "pending".to_owned(),
        };
        (answered, body.is_end_stream())
    }

    #[test]
    fn a_one_message_body_has_ended_when_its_message_is_taken() {
        let mut body = EndsWithLastFrame::new(Scripted([data(b"m")].into()));
        assert!(!body.is_end_stream());
        assert_eq!(step(&mut body), ("data m".to_owned(), true));
        assert_eq!(body.size_hint().exact(), Some(0));
        assert_eq!(step(&mut body), ("end".to_owned(), true));
    }

    #[test]
    fn frames_keep_their_order_and_the_end_is_known_only_after_the_last() {
        let trailers = Poll::Ready(Some(Ok(Frame::trailers(http::HeaderMap::new()))));
        let mut body = EndsWithLastFrame::new(Scripted(
            [data(b"a"), data(b"b"), Poll::Pending, data(b"c"), trailers].into(),
        ));
        // After `a` the look-ahead holds `b`; after `b` it finds the inner body pending.
        assert_eq!(step(&mut body), ("data a".to_owned(), false));
        assert_eq!(body.size_hint().exact(), None);
        assert_eq!(step(&mut body), ("data b".to_owned(), false));
        assert_eq!(step(&mut body), ("data c".to_owned(), false));
        assert_eq!(step(&mut body), ("trailers".to_owned(), false));
        assert_eq!(step(&mut body), ("end".to_owned(), true));
    }

    #[test]
    fn a_pending_body_stays_pending_and_is_not_ended() {
        let mut body = EndsWithLastFrame::new(Scripted([Poll::Pending, data(b"x")].into()));
        assert_eq!(step(&mut body), ("pending".to_owned(), false));
        assert_eq!(step(&mut body), ("data x".to_owned(), true));
    }

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(
            host_port("127.0.0.1:50051").unwrap(),
            ("127.0.0.1".into(), 50051)
        );
        assert_eq!(
            host_port("http://smooch-users:50051").unwrap(),
            ("smooch-users".into(), 50051)
        );
        assert_eq!(host_port("[::1]:9").unwrap(), ("::1".into(), 9));
        assert!(host_port("nohost").is_err());
        assert!(host_port("host:notaport").is_err());
    }
}
