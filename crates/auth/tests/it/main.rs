//! The credential cache, revocations and rate limits against the real Redis
//! (`SMOOCH_REDIS_URL`, default `redis://127.0.0.1:6379`), each test under a prefix of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod audience;
mod cache;
mod parsing;
mod presence;
mod ratelimit;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use auth::{CredentialSource, KeyInfo, RedisClient, RedisConfig};

/// Redis for tests, under a fresh prefix.
pub fn redis() -> RedisClient {
    let url =
        std::env::var("SMOOCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("test-auth-{}-{}", std::process::id(), domain::id::new_id());
    RedisClient::new(RedisConfig::new(url, prefix)).unwrap()
}

/// A source of truth in memory that counts its lookups.
#[derive(Default, Clone)]
pub struct Counting {
    pub apps: Arc<Mutex<HashMap<String, String>>>,
    pub keys: Arc<Mutex<HashMap<String, KeyInfo>>>,
    pub calls: Arc<AtomicUsize>,
}

impl Counting {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl CredentialSource for Counting {
    async fn app_for_token(&self, token: &str) -> Result<Option<String>, domain::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.apps.lock().unwrap().get(token).cloned())
    }

    async fn key(&self, kid: &str) -> Result<Option<KeyInfo>, domain::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.keys.lock().unwrap().get(kid).cloned())
    }
}
