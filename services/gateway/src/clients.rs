//! gRPC clients of the backing services, over lazily connected, shared HTTP/2 channels.

use anyhow::Context as _;
use proto::v1::{
    conversations_client::ConversationsClient, media_client::MediaClient,
    users_client::UsersClient, webhooks_client::WebhooksClient,
};
use tonic::transport::{Channel, Endpoint};

use crate::Config;

/// One client per backing service; cheap to clone.
#[derive(Clone)]
pub struct Clients {
    /// Apps, keys and app users.
    pub users: UsersClient<Channel>,
    /// Conversations and messages.
    pub conversations: ConversationsClient<Channel>,
    /// Media bytes.
    pub media: MediaClient<Channel>,
    /// Webhook subscriptions.
    pub webhooks: WebhooksClient<Channel>,
    /// The channels by service name, for health checks.
    pub channels: Vec<(&'static str, Channel)>,
}

fn channel(addr: &str, config: &Config) -> anyhow::Result<Channel> {
    let url = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    Ok(Endpoint::from_shared(url.clone())
        .with_context(|| format!("malformed gRPC address {addr:?}"))?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(config.grpc_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .connect_lazy())
}

impl Clients {
    /// Makes the clients; connections open on first use and reconnect by themselves.
    pub fn connect(config: &Config) -> anyhow::Result<Self> {
        let users = channel(&config.users_addr, config)?;
        let conversations = channel(&config.conversations_addr, config)?;
        let media = channel(&config.media_addr, config)?;
        let webhooks = channel(&config.webhooks_addr, config)?;
        Ok(Clients {
            users: UsersClient::new(users.clone()),
            conversations: ConversationsClient::new(conversations.clone()),
            media: MediaClient::new(media.clone()),
            webhooks: WebhooksClient::new(webhooks.clone()),
            channels: vec![
                ("users", users),
                ("conversations", conversations),
                ("media", media),
                ("webhooks", webhooks),
            ],
        })
    }
}
