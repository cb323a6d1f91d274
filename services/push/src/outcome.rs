//! What became of one notification at its provider.

/// The result of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Accepted by the provider.
    Delivered,
    /// The token is invalid or no longer registered: forget it.
    Unregistered(String),
    /// Worth another try later (429, 5xx, network, an expired auth token).
    Retry(String),
    /// Refused for good (bad credentials, a malformed request).
    Failed(String),
}

impl Outcome {
    /// The label in metrics.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Unregistered(_) => "unregistered",
            Outcome::Retry(_) => "retrying",
            Outcome::Failed(_) => "failed",
        }
    }

    /// Why it was not delivered; `None` when it was.
    pub(crate) fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Delivered => None,
            Outcome::Unregistered(r) | Outcome::Retry(r) | Outcome::Failed(r) => Some(r),
        }
    }

    /// The outcome of a status that is neither success nor a token problem: 429 and 5xx
    /// retry, anything else fails.
    pub(crate) fn of_status(status: reqwest::StatusCode, reason: String) -> Self {
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Outcome::Retry(reason)
        } else {
            Outcome::Failed(reason)
        }
    }

    /// The outcome of a request that got no answer.
    pub(crate) fn of_error(err: reqwest::Error) -> Self {
        // Without the URL: it holds the device token.
        Outcome::Retry(format!("request failed: {}", err.without_url()))
    }
}
