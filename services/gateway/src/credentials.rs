//! The users service as the credential cache's source of truth: the gRPC lookups behind
//! `auth::CredentialCache`, with "not found" meaning an unknown credential.

use auth::{CredentialSource, KeyInfo};
use domain::ErrorCode;
use proto::v1 as pb;
use proto::v1::users_handle::UsersHandle;
use telemetry::grpc::GrpcChannel;

use crate::error::ApiError;

/// The cache of this gateway, in front of the users service.
pub(crate) type Credentials = auth::CredentialCache<UsersSource>;

/// Looks credentials up with the users service.
pub(crate) struct UsersSource {
    users: UsersHandle<GrpcChannel>,
}

impl UsersSource {
    pub(crate) fn new(users: UsersHandle<GrpcChannel>) -> Self {
        UsersSource { users }
    }
}

/// `NOT_FOUND` is an unknown credential (`None`); any other failure is the caller's error
/// (logged by the conversion when it is ours, and never cached).
fn none_if_not_found<T>(status: tonic::Status) -> Result<Option<T>, domain::Error> {
    let err = ApiError::from(status).0;
    if err.code == ErrorCode::NotFound {
        Ok(None)
    } else {
        Err(err)
    }
}

impl CredentialSource for UsersSource {
    async fn app_for_token(&self, token: &str) -> Result<Option<String>, domain::Error> {
        let request = pb::ResolveAppTokenRequest {
            app_token: token.to_owned(),
        };
        match self.users.clone().resolve_app_token(request).await {
            Ok(app) => Ok(Some(app.into_inner().id)),
            Err(status) => none_if_not_found(status),
        }
    }

    async fn key(&self, kid: &str) -> Result<Option<KeyInfo>, domain::Error> {
        let request = pb::ResolveKeyRequest {
            key_id: kid.to_owned(),
        };
        match self.users.clone().resolve_key(request).await {
            Ok(key) => {
                let key = key.into_inner();
                Ok(Some(KeyInfo {
                    id: key.id,
                    app_id: (!key.app_id.is_empty()).then_some(key.app_id),
                    secret: key.secret,
                }))
            }
            Err(status) => none_if_not_found(status),
        }
    }
}
