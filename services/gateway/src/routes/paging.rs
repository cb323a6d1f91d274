//! `limit` / `offset` paging of the lists that answer `{..., "hasMore", "offset"}` newest
//! first (`GET /v1/apps`, `GET /v1/push/deliveries`).

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use domain::Error;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiResult;

/// The page size when the request names none, and the largest one.
const DEFAULT_LIMIT: u32 = 25;
const MAX_LIMIT: u32 = 100;

/// The paging parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// How many items per page: 1 to 100, default 25.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// How many items to skip (newest first), default 0.
    offset: Option<u32>,
}

/// `(limit, offset)` of a request, or a 400 that says what to send.
pub(crate) fn limit_offset(
    query: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<(u32, u32)> {
    let Query(query) = query.map_err(|e| {
        Error::bad_request(format!(
            "limit and offset must be whole numbers, limit 1 to {MAX_LIMIT}: {}",
            e.body_text()
        ))
    })?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(
            Error::bad_request(format!("limit must be 1 to {MAX_LIMIT}; got {limit}")).into(),
        );
    }
    Ok((limit, query.offset.unwrap_or(0)))
}
