//! Auth: the daemon asks us for a registry's credentials when it pulls or pushes.
//!
//! We serve `Credentials` from the docker config (see `credentials`); the daemon then
//! fetches registry tokens itself. `GetTokenAuthority` answers Unimplemented, which
//! every daemon since v0.8 reads as "no token authority here, ask for Credentials";
//! `FetchToken` is only called when a token authority was offered, so it and
//! `VerifyTokenAuthority` answer Unimplemented too. A helper runs at most once per
//! host per session; nothing here logs a secret.

use std::collections::HashMap;
use std::sync::Arc;

use bollard_buildkit_proto::moby::filesync::v1::auth_server::{Auth, AuthServer};
use bollard_buildkit_proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use tonic::{Request, Response, Status};

use crate::buildkit::credentials::{Credential, DockerConfig};

/// Serves `moby.filesync.v1.Auth` from a docker config.
pub struct AuthService {
    config: Arc<DockerConfig>,
    /// Answers so far, by host; the lock also serialises helper runs.
    answers: tokio::sync::Mutex<HashMap<String, Credential>>,
}

impl AuthService {
    pub fn new(config: DockerConfig) -> Self {
        AuthService {
            config: Arc::new(config),
            answers: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The tonic service for the session's router.
    pub fn into_server(self) -> AuthServer<Self> {
        AuthServer::new(self)
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let host = request.into_inner().host;
        let mut answers = self.answers.lock().await;
        let cred = match answers.get(&host) {
            Some(c) => c.clone(),
            None => {
                let c = self
                    .config
                    .credentials(&host)
                    .await
                    .map_err(|e| Status::failed_precondition(e.to_string()))?;
                answers.insert(host, c.clone());
                c
            }
        };
        Ok(Response::new(CredentialsResponse {
            username: cred.username,
            secret: cred.secret,
        }))
    }

    async fn fetch_token(
        &self,
        _request: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented(
            "the client fetches no tokens: use Credentials",
        ))
    }

    async fn get_token_authority(
        &self,
        _request: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("no token authority: use Credentials"))
    }

    async fn verify_token_authority(
        &self,
        _request: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("no token authority: use Credentials"))
    }
}
