//! gRPC clients of the backing services, over shared HTTP/2 channels.
//!
//! One HTTP/2 connection pins to one pod behind a Kubernetes ClusterIP, so for a service
//! addressed by DNS name (a headless Service in Kubernetes) the gateway balances on the client
//! side: it resolves the name periodically and spreads calls over every address it returns
//! (tonic's balanced channel, power of two choices). IP literals get a plain channel.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use proto::v1 as pb;
use proto::v1::{
    conversations_handle::ConversationsHandle, media_client::MediaClient,
    users_handle::UsersHandle, webhooks_handle::WebhooksHandle,
};
use tasks::Tasks;
use telemetry::grpc::GrpcChannel;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};

use crate::lane::{PostLanes, Sent};
use crate::Config;

/// How often DNS names of backing services are resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// One client per backing service; cheap to clone.
#[derive(Clone)]
pub struct Clients {
    /// Apps, keys and app users.
    pub users: UsersHandle<GrpcChannel>,
    /// Conversations and messages.
    pub conversations: ConversationsHandle<GrpcChannel>,
    /// Media bytes.
    pub media: MediaClient<GrpcChannel>,
    /// Webhook subscriptions.
    pub webhooks: WebhooksHandle<GrpcChannel>,
    /// The channels by service name, for health checks.
    pub channels: Vec<(&'static str, GrpcChannel)>,
    /// The post lanes to the conversations replicas (network clients only).
    lanes: Option<Arc<PostLanes>>,
    /// Deadline of a post on a lane, as of each gRPC call.
    timeout: Duration,
}

/// The endpoint at `url`, without a timeout on its calls: a post lane's stream lives on;
/// the unary calls' channel adds the configured timeout.
fn endpoint(url: String) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(url.clone())
        .with_context(|| format!("malformed gRPC address {url:?}"))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

/// A channel to the service at `addr`; with `lanes`, a post lane to each of its replicas
/// as well.
fn channel(
    addr: &str,
    config: &Config,
    tasks: &Tasks,
    lanes: Option<Arc<PostLanes>>,
) -> anyhow::Result<Channel> {
    let (host, port) = telemetry::grpc::host_port(addr)?;
    if host.parse::<IpAddr>().is_ok() {
        let url = telemetry::grpc::url(addr);
        let base = endpoint(url.clone())?;
        if let Some(lanes) = lanes {
            lanes.add(url, base.connect_lazy(), tasks);
        }
        return Ok(base.timeout(config.grpc_timeout).connect_lazy());
    }
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    tasks.spawn(
        "grpc endpoint resolver",
        resolve(
            Resolved {
                host,
                port,
                changes,
                lanes,
                tasks: tasks.clone(),
            },
            config.clone(),
        ),
    );
    Ok(channel)
}

/// What a resolver keeps up to date: the endpoints of `host` in a balanced channel, and
/// the post lanes to them, if any.
struct Resolved {
    host: String,
    port: u16,
    changes: tokio::sync::mpsc::Sender<Change<SocketAddr, Endpoint>>,
    lanes: Option<Arc<PostLanes>>,
    /// Where the lanes run; the resolver stops on their shutdown.
    tasks: Tasks,
}

/// Keeps `resolved` up to date until the gateway's shutdown (or until the channel is gone).
async fn resolve(resolved: Resolved, config: Config) {
    let Resolved {
        host,
        port,
        changes,
        lanes,
        tasks,
    } = resolved;
    let shutdown = tasks.shutdown().clone();
    let mut known: HashSet<SocketAddr> = HashSet::new();
    loop {
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(found) => {
                let found: HashSet<SocketAddr> = found.collect();
                for gone in known.difference(&found) {
                    tracing::info!(service = %host, addr = %gone, "grpc endpoint removed");
                    if let Some(lanes) = &lanes {
                        lanes.remove(&format!("http://{gone}"));
                    }
                    if changes.send(Change::Remove(*gone)).await.is_err() {
                        return;
                    }
                }
                for new in found.difference(&known) {
                    let url = format!("http://{new}");
                    let Ok(base) = endpoint(url.clone()) else {
                        continue;
                    };
                    tracing::info!(service = %host, addr = %new, "grpc endpoint added");
                    if let Some(lanes) = &lanes {
                        lanes.add(url, base.connect_lazy(), &tasks);
                    }
                    let ep = base.timeout(config.grpc_timeout);
                    if changes.send(Change::Insert(*new, ep)).await.is_err() {
                        return;
                    }
                }
                known = found;
            }
            Err(e) => {
                // Keep the last known endpoints: a DNS hiccup must not empty the pool.
                tracing::warn!(service = %host, error = %e, "resolving grpc service failed");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RESOLVE_EVERY) => {}
        }
    }
}

impl Clients {
    /// Makes the clients; connections open on first use and reconnect by themselves. DNS
    /// names are re-resolved by tasks on `tasks`, until their shutdown.
    /// With `config.in_process` set, the services of this process are called directly:
    /// unary calls by their handles, the rest through the in-process channels.
    pub fn new(config: &Config, tasks: &Tasks) -> anyhow::Result<Self> {
        let lanes = config
            .in_process
            .is_none()
            .then(|| Arc::new(PostLanes::default()));
        let [users, conversations, media, webhooks] = match &config.in_process {
            Some(services) => [
                services.users.clone(),
                services.conversations.clone(),
                services.media.clone(),
                services.webhooks.clone(),
            ],
            None => [
                (&config.users_addr, None),
                (&config.conversations_addr, lanes.clone()),
                (&config.media_addr, None),
                (&config.webhooks_addr, None),
            ]
            .map(|(addr, lanes)| channel(addr, config, tasks, lanes).map(telemetry::grpc::network))
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?
            .try_into()
            .map_err(|_| anyhow!("expected four channels"))?,
        };
        let local = config.in_process.as_ref();
        let timeout = config.grpc_timeout;
        Ok(Clients {
            users: UsersHandle::new(
                users.clone(),
                local.map(|services| (services.users_service.clone(), timeout)),
            ),
            conversations: ConversationsHandle::new(
                conversations.clone(),
                local.map(|services| (services.conversations_service.clone(), timeout)),
            ),
            media: MediaClient::new(media.clone()),
            webhooks: WebhooksHandle::new(
                webhooks.clone(),
                local.map(|services| (services.webhooks_service.clone(), timeout)),
            ),
            channels: vec![
                ("users", users),
                ("conversations", conversations),
                ("media", media),
                ("webhooks", webhooks),
            ],
            lanes,
            timeout,
        })
    }

    /// Posts a message: on a post lane when one is open (split roles), else by a unary
    /// call.
    pub async fn post_message(
        &self,
        request: pb::PostMessageRequest,
    ) -> Result<pb::PostMessageResponse, tonic::Status> {
        let request = match &self.lanes {
            Some(lanes) => {
                let trace = telemetry::propagation::current_context_map();
                match lanes.post(request, trace, self.timeout).await {
                    Sent::Answered(answer) => return answer,
                    Sent::Declined(request) => request,
                }
            }
            None => request,
        };
        self.conversations
            .clone()
            .post_message(request)
            .await
            .map(tonic::Response::into_inner)
    }
}
