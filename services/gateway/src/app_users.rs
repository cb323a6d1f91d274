//! App users cached in front of the users service, for the paths that resolve one on every
//! request (posting a message, reading the conversation).
//!
//! Correctness across replicas rests on the credential cache's revocation channel, which
//! this cache follows ([`auth::Follower`]):
//! - the users service names every app user it changed (profile, devices, conversation
//!   started, merged away, deleted) on the channel after the change commits, and every
//!   replica drops them;
//! - a fill that raced with a change is undone: it is inserted first and dropped when the
//!   generation moved meanwhile, as the credential cache does;
//! - while the channel is not subscribed (Redis down, reconnecting), or when the lifetime
//!   is zero, nothing is cached and every lookup asks the users service;
//! - the gateway forgets a user itself after it changed it ([`AppUsers::forget`]), so its
//!   own client reads its writes without waiting for the channel.
//!
//! A user is kept under its `_id`, and found by its `userId` through an alias checked
//! against the user it points to. A merged-away `_id`, which resolves to another user, is
//! never cached.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use proto::v1 as pb;

/// (app id, `_id` or `userId`).
type Key = (String, String);

/// The cache; share it behind an `Arc`.
pub(crate) struct AppUsers {
    /// Users by (app, `_id`).
    users: Cache<Key, Arc<pb::AppUser>>,
    /// `_id` by (app, `userId`).
    aliases: Cache<Key, String>,
    /// Bumped by every change heard of: a fill that started before a bump must not
    /// survive it.
    generation: AtomicU64,
    enabled: bool,
}

impl std::fmt::Debug for AppUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppUsers")
            .field("users", &self.users.entry_count())
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// Most aliases (`userId` → `_id`) kept.
const MAX_ALIASES: u64 = 100_000;

impl AppUsers {
    /// A cache keeping users for `ttl` (zero: never), in at most `max_bytes` of their
    /// encoded size (a user's devices and properties can weigh kilobytes).
    pub(crate) fn new(ttl: Duration, max_bytes: u64) -> Self {
        let enabled = !ttl.is_zero();
        let ttl = ttl.max(Duration::from_millis(1));
        let weigh = |key: &Key, user: &Arc<pb::AppUser>| {
            let bytes = key.0.len() + key.1.len() + prost::Message::encoded_len(user.as_ref());
            u32::try_from(bytes).unwrap_or(u32::MAX)
        };
        AppUsers {
            users: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(weigh)
                .time_to_live(ttl)
                .build(),
            aliases: Cache::builder()
                .max_capacity(MAX_ALIASES)
                .time_to_live(ttl)
                .build(),
            generation: AtomicU64::new(0),
            enabled,
        }
    }

    /// Whether lookups may use it at all.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The user of `app_id` whose `_id` or `userId` is `id`, if cached.
    pub(crate) fn get(&self, app_id: &str, id: &str) -> Option<pb::AppUser> {
        let key = (app_id.to_owned(), id.to_owned());
        let hit = match self.users.get(&key) {
            Some(user) => Some(user),
            None => {
                let app_user_id = self.aliases.get(&key)?;
                self.users
                    .get(&(app_id.to_owned(), app_user_id))
                    .filter(|user| user.user_id.as_deref() == Some(id))
            }
        };
        metrics::counter!(
            "app_user_cache_lookups_total",
            "answered_by" => if hit.is_some() { "cache" } else { "users" }
        )
        .increment(1);
        hit.map(|user| (*user).clone())
    }

    /// The generation to hand to [`AppUsers::remember`] for a fill started now.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Keeps `user`, which the users service answered for `asked` (its `_id` or `userId`)
    /// in a lookup started at `generation`; unless a change was heard of since.
    pub(crate) fn remember(&self, asked: &str, user: &pb::AppUser, generation: u64) {
        let by_user_id = user.user_id.as_deref() == Some(asked);
        if asked != user.id && !by_user_id {
            // A merged-away `_id`, answered with the user it merged into.
            return;
        }
        let key = (user.app_id.clone(), user.id.clone());
        self.users.insert(key.clone(), Arc::new(user.clone()));
        let alias = by_user_id.then(|| (user.app_id.clone(), asked.to_owned()));
        if let Some(alias) = &alias {
            self.aliases.insert(alias.clone(), user.id.clone());
        }
        // Insert first, check after: a change that bumps the generation before this check
        // is seen here; one that bumps it after also drops the entry after the insert.
        if self.generation.load(Ordering::SeqCst) != generation {
            self.users.invalidate(&key);
            if let Some(alias) = &alias {
                self.aliases.invalidate(alias);
            }
        }
    }

    /// Drops the user `app_user_id` of `app_id`; its aliases then lead nowhere.
    pub(crate) fn forget(&self, app_id: &str, app_user_id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.users
            .invalidate(&(app_id.to_owned(), app_user_id.to_owned()));
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.users.invalidate_all();
        self.aliases.invalidate_all();
    }
}

impl auth::Follower for AppUsers {
    fn revoked(&self, revocation: &auth::Revocation) {
        // A deleted app or key, a rotated token: rare, and a cached user of a deleted app
        // must not outlive it.
        if revocation.names_credentials() {
            self.clear();
        }
        for changed in &revocation.app_users {
            self.forget(&changed.app_id, &changed.app_user_id);
        }
    }

    fn cleared(&self) {
        self.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use auth::Follower as _;

    fn user(app: &str, id: &str, user_id: Option<&str>) -> pb::AppUser {
        pb::AppUser {
            app_id: app.to_owned(),
            id: id.to_owned(),
            user_id: user_id.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn users_are_found_by_id_and_user_id_within_their_app_only() {
        let cache = AppUsers::new(Duration::from_secs(30), 1 << 20);
        let g = cache.generation();
        cache.remember("steve", &user("app1", "u1", Some("steve")), g);
        assert_eq!(cache.get("app1", "u1").unwrap().id, "u1");
        assert_eq!(cache.get("app1", "steve").unwrap().id, "u1");
        assert!(cache.get("app2", "u1").is_none());
        assert!(cache.get("app2", "steve").is_none());
        assert!(cache.get("app1", "other").is_none());
    }

    #[test]
    fn a_change_drops_the_user_and_its_alias() {
        let cache = AppUsers::new(Duration::from_secs(30), 1 << 20);
        cache.remember(
            "steve",
            &user("app1", "u1", Some("steve")),
            cache.generation(),
        );
        cache.revoked(&auth::Revocation::app_users("app1", ["u1"]));
        assert!(cache.get("app1", "u1").is_none());
        assert!(cache.get("app1", "steve").is_none());
        // Another app's user of the same id is not touched.
        cache.remember("u1", &user("app2", "u1", None), cache.generation());
        cache.revoked(&auth::Revocation::app_users("app1", ["u1"]));
        assert!(cache.get("app2", "u1").is_some());
    }

    #[test]
    fn a_fill_that_raced_with_a_change_is_not_kept() {
        let cache = AppUsers::new(Duration::from_secs(30), 1 << 20);
        let before = cache.generation();
        cache.forget("app1", "u9");
        cache.remember("u1", &user("app1", "u1", None), before);
        assert!(cache.get("app1", "u1").is_none());
    }

    #[test]
    fn an_alias_to_a_user_with_another_user_id_misses() {
        let cache = AppUsers::new(Duration::from_secs(30), 1 << 20);
        cache.remember(
            "steve",
            &user("app1", "u1", Some("steve")),
            cache.generation(),
        );
        // u1 is cached again as it is now, without that userId.
        cache.forget("app1", "u1");
        cache.remember("u1", &user("app1", "u1", None), cache.generation());
        assert!(cache.get("app1", "steve").is_none());
        assert!(cache.get("app1", "u1").is_some());
    }

    #[test]
    fn merged_away_ids_and_credential_revocations() {
        let cache = AppUsers::new(Duration::from_secs(30), 1 << 20);
        // Asked for a merged-away id, answered with the survivor: not cached.
        cache.remember(
            "gone",
            &user("app1", "u1", Some("steve")),
            cache.generation(),
        );
        assert!(cache.get("app1", "gone").is_none());
        assert!(cache.get("app1", "u1").is_none());
        cache.remember("u1", &user("app1", "u1", None), cache.generation());
        cache.revoked(&auth::Revocation::new([], vec!["kid".into()]));
        assert!(cache.get("app1", "u1").is_none());
        cache.remember("u1", &user("app1", "u1", None), cache.generation());
        cache.cleared();
        assert!(cache.get("app1", "u1").is_none());
    }

    #[test]
    fn users_are_kept_within_the_byte_bound() {
        let cache = AppUsers::new(Duration::from_secs(30), 16 * 1024);
        for i in 0..64 {
            let mut u = user("app1", &format!("u{i}"), None);
            u.properties_json = format!("{{\"note\": \"{}\"}}", "x".repeat(1024));
            cache.remember(&u.id.clone(), &u, cache.generation());
        }
        cache.users.run_pending_tasks();
        assert!(cache.users.weighted_size() <= 16 * 1024);
        let kept = (0..64)
            .filter(|i| cache.get("app1", &format!("u{i}")).is_some())
            .count();
        assert!((1..64).contains(&kept), "{kept} of 64 users kept");
    }

    #[test]
    fn a_zero_lifetime_disables_it() {
        assert!(!AppUsers::new(Duration::ZERO, 1 << 20).enabled());
        assert!(AppUsers::new(Duration::from_secs(1), 1 << 20).enabled());
    }
}
