//! Registry credentials as the docker CLI keeps them: `config.json` in `$DOCKER_CONFIG`
//! or `~/.docker`, with `auths` (base64 `user:pass`, username/password, or an identity
//! token), `credsStore` (one helper for every registry) and `credHelpers` (a helper
//! per registry), each helper being `docker-credential-<name> get`: the registry on
//! stdin, JSON out. Docker Hub's pull host `registry-1.docker.io` is stored under
//! `https://index.docker.io/v1/`. Secrets never reach a log or an error message:
//! `Credential`'s Debug redacts, and a helper's output is quoted only when it failed.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where docker keeps Docker Hub's credentials.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// How long a credential helper may take (it may talk to a keychain).
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// A registry login: both empty means anonymous; an identity token is a `secret` with
/// an empty `username`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub secret: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field(
                "secret",
                &if self.secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish()
    }
}

impl Credential {
    pub fn is_anonymous(&self) -> bool {
        self.username.is_empty() && self.secret.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read docker config {}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("credential helper docker-credential-{helper} (from {}) is not on PATH; install it or change that file", config.display())]
    HelperMissing { helper: String, config: PathBuf },
    #[error("credential helper docker-credential-{helper} failed for {host}: {message}")]
    Helper {
        helper: String,
        host: String,
        message: String,
    },
    #[error(
        "credential helper docker-credential-{helper} gave no answer for {host} within {secs} s"
    )]
    HelperTimeout {
        helper: String,
        host: String,
        secs: u64,
    },
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Deserialize, Default, Clone)]
struct AuthEntry {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    identitytoken: String,
}

/// What `docker-credential-* get` prints.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The docker CLI's credential configuration, loaded once.
pub struct DockerConfig {
    path: PathBuf,
    file: ConfigFile,
    /// Where helpers are looked up (`PATH` unless set).
    search_path: Option<OsString>,
    timeout: Duration,
}

impl std::fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .field("auths", &self.file.auths.keys().collect::<Vec<_>>())
            .field("creds_store", &self.file.creds_store)
            .field("cred_helpers", &self.file.cred_helpers)
            .finish()
    }
}

/// `$DOCKER_CONFIG`, else `$HOME/.docker`, as docker picks it.
pub fn config_dir(docker_config: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    match docker_config.filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => home
            .filter(|v| !v.is_empty())
            .map(|h| PathBuf::from(h).join(".docker")),
    }
}

impl DockerConfig {
    /// The config of this process's environment (no file: anonymous everywhere).
    pub fn from_env() -> Result<Self, CredentialsError> {
        let dir = config_dir(std::env::var_os("DOCKER_CONFIG"), std::env::var_os("HOME"))
            .unwrap_or_else(|| PathBuf::from(".docker"));
        Self::load(&dir)
    }

    /// `DIR/config.json`; a missing file is an empty config, a malformed one an error.
    pub fn load(dir: &Path) -> Result<Self, CredentialsError> {
        let path = dir.join("config.json");
        let fail = |message: String| CredentialsError::Config {
            path: path.clone(),
            message,
        };
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<ConfigFile>(&bytes)
                .map_err(|e| fail(format!("{e}; fix the JSON or remove the file")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
            Err(e) => return Err(fail(e.to_string())),
        };
        for (key, entry) in &file.auths {
            if !entry.auth.is_empty() {
                decode_auth(&entry.auth)
                    .map_err(|why| fail(format!("auths[{key:?}].auth is {why}")))?;
            }
        }
        Ok(DockerConfig {
            path,
            file,
            search_path: None,
            timeout: HELPER_TIMEOUT,
        })
    }

    /// Look credential helpers up in this `PATH`-style list instead of `$PATH`.
    pub fn with_search_path(mut self, path: OsString) -> Self {
        self.search_path = Some(path);
        self
    }

    /// Give a credential helper at most this long.
    pub fn with_helper_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The credential for a registry host as the daemon names it (`host[:port]`).
    pub async fn credentials(&self, host: &str) -> Result<Credential, CredentialsError> {
        let key = if host == "registry-1.docker.io" || host == "docker.io" {
            DOCKER_HUB_KEY
        } else {
            host
        };
        let helper = self
            .file
            .cred_helpers
            .get(key)
            .or_else(|| {
                self.file
                    .cred_helpers
                    .iter()
                    .find(|(k, _)| hostname(k) == hostname(key))
                    .map(|(_, v)| v)
            })
            .or(self.file.creds_store.as_ref())
            .filter(|h| !h.is_empty());
        if let Some(helper) = helper {
            return self.ask_helper(helper, key).await;
        }
        let entry = self.file.auths.get(key).or_else(|| {
            self.file
                .auths
                .iter()
                .find(|(k, _)| hostname(k) == hostname(key))
                .map(|(_, v)| v)
        });
        let Some(entry) = entry else {
            return Ok(Credential::default());
        };
        if !entry.identitytoken.is_empty() {
            return Ok(Credential {
                username: String::new(),
                secret: entry.identitytoken.clone(),
            });
        }
        if !entry.auth.is_empty() {
            let (username, secret) = decode_auth(&entry.auth).expect("checked at load");
            return Ok(Credential { username, secret });
        }
        Ok(Credential {
            username: entry.username.clone(),
            secret: entry.password.clone(),
        })
    }

    fn find_helper(&self, helper: &str) -> Option<PathBuf> {
        let name = format!("docker-credential-{helper}");
        let path = self
            .search_path
            .clone()
            .or_else(|| std::env::var_os("PATH"))?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(&name))
            .find(|p| is_executable(p))
    }

    async fn ask_helper(&self, helper: &str, key: &str) -> Result<Credential, CredentialsError> {
        let program = self
            .find_helper(helper)
            .ok_or_else(|| CredentialsError::HelperMissing {
                helper: helper.into(),
                config: self.path.clone(),
            })?;
        let failed = |message: String| CredentialsError::Helper {
            helper: helper.into(),
            host: key.into(),
            message,
        };
        let mut cmd = tokio::process::Command::new(&program);
        cmd.arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::process::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| failed(e.to_string()))?;
        let run = async {
            let mut stdin = child.stdin.take().expect("piped");
            stdin.write_all(key.as_bytes()).await?;
            drop(stdin);
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let mut stdout = child.stdout.take().expect("piped");
            let mut stderr = child.stderr.take().expect("piped");
            let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            a?;
            b?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out, err))
        };
        let (status, out, err) = match tokio::time::timeout(self.timeout, run).await {
            Ok(result) => result.map_err(|e| failed(e.to_string()))?,
            Err(_) => {
                return Err(CredentialsError::HelperTimeout {
                    helper: helper.into(),
                    host: key.into(),
                    secs: self.timeout.as_secs().max(1),
                })
            }
        };
        if !status.success() {
            // Helpers print their errors on stdout; a failure carries no secret.
            let said = String::from_utf8_lossy(if out.is_empty() { &err } else { &out })
                .trim()
                .chars()
                .take(500)
                .collect::<String>();
            if said.contains("credentials not found") {
                return Ok(Credential::default());
            }
            return Err(failed(format!("{status}: {said}")));
        }
        let answer: HelperAnswer = serde_json::from_slice(&out)
            .map_err(|e| failed(format!("its answer is not the expected JSON ({e})")))?;
        if answer.username == "<token>" {
            return Ok(Credential {
                username: String::new(),
                secret: answer.secret,
            });
        }
        Ok(Credential {
            username: answer.username,
            secret: answer.secret,
        })
    }
}

/// `user:pass` from docker's base64 `auth` field.
fn decode_auth(auth: &str) -> Result<(String, String), &'static str> {
    let bytes = base64_decode(auth.trim()).ok_or("not valid base64")?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 once decoded")?;
    let (user, pass) = text
        .split_once(':')
        .ok_or("not user:password once decoded")?;
    Ok((user.to_string(), pass.to_string()))
}

/// Standard base64 (padding optional).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().take_while(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A config key's registry host: scheme and path dropped (docker's ConvertToHostname).
fn hostname(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
