//! The per-request cost of authentication with a warm cache: reading the headers, the
//! local cache hit, and (for JWTs) verifying the signature. `cargo bench -p auth`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::time::Duration;

use auth::{CacheConfig, CredentialCache, CredentialSource, KeyInfo};
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

/// The source of truth, in memory: the bench measures cache hits only.
struct Fixed {
    apps: HashMap<String, String>,
    keys: HashMap<String, KeyInfo>,
}

impl CredentialSource for Fixed {
    async fn app_for_token(&self, token: &str) -> Result<Option<String>, domain::Error> {
        Ok(self.apps.get(token).cloned())
    }

    async fn key(&self, kid: &str) -> Result<Option<KeyInfo>, domain::Error> {
        Ok(self.keys.get(kid).cloned())
    }
}

fn bench(c: &mut Criterion) {
    let token = "a3b9f0e1c2d4a5b6c7d8e9f0a1b2c3d4".to_owned();
    let key = KeyInfo {
        id: "app_5f1e2d3c4b5a69788796a5b4".into(),
        app_id: Some("5f1e2d3c4b5a69788796a5b4".into()),
        secret: "Zq3mX9pL2vR7tY1wK8sD4fG6hJ0nB5cA".into(),
    };
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key.id.clone());
    let jwt = encode(
        &header,
        &json!({"scope": "appUser", "userId": "steve@example.com", "iat": 1}),
        &EncodingKey::from_secret(key.secret.as_bytes()),
    )
    .unwrap();
    let source = Fixed {
        apps: HashMap::from([(token.clone(), "5f1e2d3c4b5a69788796a5b4".to_owned())]),
        keys: HashMap::from([(key.id.clone(), key)]),
    };
    // No Redis here: the lifetimes are stretched so every lookup is a local hit.
    let config = CacheConfig {
        degraded_local_ttl: Duration::from_secs(3600),
        ..CacheConfig::default()
    };
    let cache = CredentialCache::new(source, None, config);
    let bearer = format!("Bearer {jwt}");

    let authenticate = |app_token: Option<&[u8]>, authorization: Option<&[u8]>| {
        let credential = auth::read_credential(app_token, authorization)
            .unwrap()
            .unwrap();
        futures::executor::block_on(cache.authenticate(&credential)).unwrap()
    };
    // Warm up both entries.
    authenticate(Some(token.as_bytes()), None);
    authenticate(None, Some(bearer.as_bytes()));

    c.bench_function("app_token_warm", |b| {
        b.iter(|| authenticate(Some(std::hint::black_box(token.as_bytes())), None))
    });
    c.bench_function("jwt_app_user_warm", |b| {
        b.iter(|| authenticate(None, Some(std::hint::black_box(bearer.as_bytes()))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
