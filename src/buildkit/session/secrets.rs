//! `moby.buildkit.secrets.v1.Secrets/GetSecret`: a `RUN --mount=type=secret,id=X`
//! asks for X; we answer from a file or an environment variable, read at that
//! moment. An unknown id is NotFound (the daemon then fails the step, or skips an
//! optional mount). A secret's value never appears in a log or an error.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::Secrets;
use bollard_buildkit_proto::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use tonic::{Request, Response, Status};

/// Where a secret's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// A secret that cannot be served, named by id and source (never by value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret {id:?}: cannot read {path}: {why}")]
    File {
        id: String,
        path: PathBuf,
        why: String,
    },
    #[error("secret {id:?}: environment variable {var} is not set")]
    Env { id: String, var: String },
}

impl SecretSource {
    /// The secret's bytes now.
    pub fn read(&self, id: &str) -> Result<Vec<u8>, SecretError> {
        match self {
            SecretSource::File(path) => std::fs::read(path).map_err(|e| SecretError::File {
                id: id.to_string(),
                path: path.clone(),
                why: e.to_string(),
            }),
            SecretSource::Env(var) => std::env::var_os(var)
                .map(std::os::unix::ffi::OsStringExt::into_vec)
                .ok_or_else(|| SecretError::Env {
                    id: id.to_string(),
                    var: var.clone(),
                }),
        }
    }

    /// Refuse a secret that could not be served, before any connection is made.
    pub fn check(&self, id: &str) -> Result<(), SecretError> {
        match self {
            SecretSource::File(path) => {
                std::fs::File::open(path)
                    .map(|_| ())
                    .map_err(|e| SecretError::File {
                        id: id.to_string(),
                        path: path.clone(),
                        why: e.to_string(),
                    })
            }
            SecretSource::Env(_) => self.read(id).map(|_| ()),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SecretsService {
    secrets: HashMap<String, SecretSource>,
}

impl SecretsService {
    pub fn new(secrets: HashMap<String, SecretSource>) -> SecretsService {
        SecretsService { secrets }
    }
}

#[tonic::async_trait]
impl Secrets for SecretsService {
    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = request.into_inner().id;
        let Some(source) = self.secrets.get(&id) else {
            return Err(Status::not_found(format!(
                "secret {id:?} was not given to this build (--secret id={id},src=...)"
            )));
        };
        let data = source
            .read(&id)
            .map_err(|e| Status::not_found(e.to_string()))?;
        Ok(Response::new(GetSecretResponse { data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_and_env_sources_unknown_ids_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, b"s3cr3t\n").unwrap();
        // A variable only this test sets.
        std::env::set_var("KUBECTL_BUILDKIT_TEST_SECRET_7", "from-env");
        let svc = SecretsService::new(HashMap::from([
            ("tok".to_string(), SecretSource::File(path.clone())),
            (
                "env".to_string(),
                SecretSource::Env("KUBECTL_BUILDKIT_TEST_SECRET_7".into()),
            ),
            (
                "gone".to_string(),
                SecretSource::File(dir.path().join("missing")),
            ),
        ]));
        let get = |id: &str| GetSecretRequest {
            id: id.into(),
            ..Default::default()
        };
        let data = |r: Response<GetSecretResponse>| r.into_inner().data;
        assert_eq!(
            data(svc.get_secret(Request::new(get("tok"))).await.unwrap()),
            b"s3cr3t\n"
        );
        assert_eq!(
            data(svc.get_secret(Request::new(get("env"))).await.unwrap()),
            b"from-env"
        );
        let err = svc
            .get_secret(Request::new(get("other")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let err = svc.get_secret(Request::new(get("gone"))).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert!(SecretSource::File(path).check("tok").is_ok());
        let e = SecretSource::File(dir.path().join("missing"))
            .check("gone")
            .unwrap_err();
        assert!(
            e.to_string().contains("secret \"gone\"") && e.to_string().contains("missing"),
            "{e}"
        );
        let e = SecretSource::Env("KUBECTL_BUILDKIT_NO_SUCH_VAR".into())
            .check("x")
            .unwrap_err();
        assert!(
            e.to_string().contains("KUBECTL_BUILDKIT_NO_SUCH_VAR"),
            "{e}"
        );
    }
}
