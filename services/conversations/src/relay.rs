//! Wakes the outbox relay right after a write commits: a tower layer around the gRPC server
//! that pokes the relay when a call that may have written outbox rows has answered (the
//! answer is sent only after the transaction committed). Reads do not poke.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bus::RelayHandle;

/// Layer for `tonic::transport::Server::builder().layer(..)`.
#[derive(Debug, Clone)]
pub(crate) struct PokeAfterWrites(pub(crate) RelayHandle);

impl<S> tower::Layer<S> for PokeAfterWrites {
    type Service = PokeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PokeService {
            inner,
            relay: self.0.clone(),
        }
    }
}

/// The service [`PokeAfterWrites`] wraps around the server.
#[derive(Debug, Clone)]
pub(crate) struct PokeService<S> {
    inner: S,
    relay: RelayHandle,
}

/// Whether the gRPC method at `path` only reads (`/smooch.v1.Conversations/GetConversation`).
fn is_read(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|m| m.starts_with("Get") || m.starts_with("List"))
        || path.starts_with("/grpc.health")
}

impl<S, B> tower::Service<http::Request<B>> for PokeService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let relay = (!is_read(request.uri().path())).then(|| self.relay.clone());
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            if let Some(relay) = relay {
                relay.poke();
            }
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_read;

    #[test]
    fn only_writes_poke() {
        assert!(is_read("/smooch.v1.Conversations/GetConversation"));
        assert!(is_read("/grpc.health.v1.Health/Check"));
        assert!(!is_read("/smooch.v1.Conversations/PostMessage"));
        assert!(!is_read("/smooch.v1.Conversations/TrackEvent"));
    }
}
