//! The smooch webhooks service.
