//! Rate limits as an axum middleware: per app, and per app user for app-token and
//! appUser-scope calls, kept in Redis (see `auth::ratelimit`). Refused requests get 429
//! with `Retry-After`; every limited response carries `X-RateLimit-Limit`,
//! `X-RateLimit-Remaining` and `X-RateLimit-Reset`. When Redis is down requests pass:
//! limits fail open, never closed.

use std::time::Duration;

use auth::{Bucket, Decision, Limit, Principal};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::{Error, ErrorCode};
use http::HeaderValue;

use crate::caller;
use crate::error::ApiError;
use crate::AppState;

/// Rate limit settings of the gateway, read from the `SMOOCH_RATE_LIMIT_*` variables.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RateLimitVars", into = "RateLimitVars")]
pub struct RateLimitConfig {
    /// Whether requests are limited at all (`SMOOCH_RATE_LIMIT_ENABLED`, default true).
    pub enabled: bool,
    /// Each app's limit (`SMOOCH_RATE_LIMIT_APP_PER_SECOND`, default 2000;
    /// `SMOOCH_RATE_LIMIT_APP_BURST`, default 4000).
    pub app: Limit,
    /// Each app user's limit, for app-token and appUser-scope calls
    /// (`SMOOCH_RATE_LIMIT_USER_PER_SECOND`, default 200; `SMOOCH_RATE_LIMIT_USER_BURST`,
    /// default 400).
    pub app_user: Limit,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            app: Limit {
                per_second: 2000.0,
                burst: 4000,
            },
            app_user: Limit {
                per_second: 200.0,
                burst: 400,
            },
        }
    }
}

/// The `SMOOCH_RATE_LIMIT_*` variables, flat as they are named.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct RateLimitVars {
    rate_limit_enabled: bool,
    rate_limit_app_per_second: f64,
    rate_limit_app_burst: u32,
    rate_limit_user_per_second: f64,
    rate_limit_user_burst: u32,
}

impl Default for RateLimitVars {
    fn default() -> Self {
        RateLimitConfig::default().into()
    }
}

impl From<RateLimitConfig> for RateLimitVars {
    fn from(c: RateLimitConfig) -> Self {
        RateLimitVars {
            rate_limit_enabled: c.enabled,
            rate_limit_app_per_second: c.app.per_second,
            rate_limit_app_burst: c.app.burst,
            rate_limit_user_per_second: c.app_user.per_second,
            rate_limit_user_burst: c.app_user.burst,
        }
    }
}

impl TryFrom<RateLimitVars> for RateLimitConfig {
    type Error = String;

    fn try_from(v: RateLimitVars) -> Result<Self, String> {
        let limit = |name: &str, per_second: f64, burst: u32| {
            if !(per_second > 0.0 && per_second.is_finite()) {
                return Err(format!(
                    "SMOOCH_RATE_LIMIT_{name}_PER_SECOND must be a positive number, got {per_second}"
                ));
            }
            if burst == 0 {
                return Err(format!(
                    "SMOOCH_RATE_LIMIT_{name}_BURST must be a positive integer, got 0"
                ));
            }
            Ok(Limit { per_second, burst })
        };
        Ok(RateLimitConfig {
            enabled: v.rate_limit_enabled,
            app: limit("APP", v.rate_limit_app_per_second, v.rate_limit_app_burst)?,
            app_user: limit(
                "USER",
                v.rate_limit_user_per_second,
                v.rate_limit_user_burst,
            )?,
        })
    }
}

/// The app user a call acts for: the `userId` of an appUser-scope token, or for an app
/// token the `{id}` of an `/v1/appusers/{id}/...` path.
fn app_user_of<'a>(principal: &'a Principal, path: &'a str) -> Option<&'a str> {
    match principal {
        Principal::AppUser { user_id, .. } => Some(user_id.as_str()),
        Principal::AppToken { .. } => path
            .strip_prefix("/v1/appusers/")
            .or_else(|| path.strip_prefix("/v1/appUsers/"))
            .and_then(|rest| rest.split('/').next())
            .filter(|id| !id.is_empty()),
        Principal::App { .. } | Principal::Account { .. } => None,
    }
}

/// The buckets a call draws from; none for account scope.
fn buckets(principal: &Principal, path: &str, config: &RateLimitConfig) -> Vec<Bucket> {
    let Some(app_id) = principal.app_id() else {
        return Vec::new();
    };
    let app_id = app_id.as_str();
    let mut buckets = vec![Bucket::app(app_id, config.app)];
    if let Some(user) = app_user_of(principal, path) {
        buckets.push(Bucket::user(app_id, user, config.app_user));
    }
    buckets
}

/// Whole seconds, rounded up.
fn seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn set_headers(response: &mut Response, decision: &Decision) {
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(decision.remaining),
    );
    headers.insert(
        "x-ratelimit-reset",
        HeaderValue::from(seconds_up(decision.reset_after)),
    );
}

fn too_many_requests(decision: &Decision) -> Response {
    metrics::counter!("rate_limit_rejections_total").increment(1);
    let retry_after = seconds_up(decision.retry_after).max(1);
    let mut response = ApiError(Error::new(
        ErrorCode::TooManyRequests,
        format!("rate limit exceeded; retry after {retry_after} s"),
    ))
    .into_response();
    set_headers(&mut response, decision);
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// The middleware: verifies the credentials once (the handler's `Caller` reuses them),
/// then takes one request from the caller's buckets.
pub(crate) async fn limit(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(limiter) = &state.limiter else {
        return next.run(request).await;
    };
    // Invalid or missing credentials are the handler's to refuse (401); nothing to count.
    let Ok(caller) = caller::authenticate(request.headers(), &state).await else {
        return next.run(request).await;
    };
    let buckets = buckets(&caller.0, request.uri().path(), &state.config.rate_limit);
    request.extensions_mut().insert(caller);
    if buckets.is_empty() {
        return next.run(request).await;
    }
    match limiter.check(&buckets).await {
        Ok(decision) if !decision.allowed => too_many_requests(&decision),
        Ok(decision) => {
            let mut response = next.run(request).await;
            set_headers(&mut response, &decision);
            response
        }
        Err(e) => {
            tracing::debug!(error = %e, "rate limit not checked, letting the request through");
            next.run(request).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_token_calls_count_against_the_path_user() {
        let token = Principal::AppToken { app_id: "a".into() };
        assert_eq!(
            app_user_of(&token, "/v1/appusers/bob/conversation"),
            Some("bob")
        );
        assert_eq!(app_user_of(&token, "/v1/appUsers/bob"), Some("bob"));
        assert_eq!(app_user_of(&token, "/v1/init"), None);
        let app = Principal::App {
            app_id: "a".into(),
            key_id: "k".into(),
        };
        assert_eq!(app_user_of(&app, "/v1/appusers/bob"), None);
        let config = RateLimitConfig::default();
        assert_eq!(buckets(&app, "/v1/appusers/bob", &config).len(), 1);
        let account = Principal::Account { key_id: "k".into() };
        assert!(buckets(&account, "/v1/apps", &config).is_empty());
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(seconds_up(Duration::from_secs(2)), 2);
        assert_eq!(seconds_up(Duration::ZERO), 0);
    }
}
