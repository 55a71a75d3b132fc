//! The fixture's registry: `docker-registry serve` (the CNCF distribution registry)
//! on 127.0.0.1 at a free port, filesystem storage in the fixture directory, and
//! optionally htpasswd users (bcrypt). dockerd treats 127.0.0.0/8 registries as
//! insecure (plain HTTP) by default, so no TLS is needed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{http, reaper, Unavailable};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Registry {
    addr: SocketAddr,
    users: Vec<(String, String)>,
    child: Mutex<Child>,
}

impl Registry {
    /// Start `docker-registry` in `dir` (created); retries on another port when the
    /// free port it picked was taken in between.
    pub(super) fn start(
        program: &Path,
        dir: &Path,
        users: &[(String, String)],
    ) -> Result<Registry, Unavailable> {
        let fail = |what: String| Unavailable::new(what);
        std::fs::create_dir_all(dir.join("data"))
            .map_err(|e| fail(format!("creating the registry's directory: {e}")))?;
        let mut auth = String::new();
        if !users.is_empty() {
            let mut htpasswd = String::new();
            for (user, password) in users {
                let hash = bcrypt::hash(password, 5)
                    .map_err(|e| fail(format!("hashing the password of {user}: {e}")))?;
                htpasswd.push_str(&format!("{user}:{hash}\n"));
            }
            let path = dir.join("htpasswd");
            std::fs::write(&path, htpasswd)
                .map_err(|e| fail(format!("writing {}: {e}", path.display())))?;
            auth = format!(
                "auth:\n  htpasswd:\n    realm: realkit\n    path: {}\n",
                path.display()
            );
        }
        let mut last = String::new();
        for _attempt in 0..3 {
            let port = free_port().map_err(|e| fail(format!("finding a free port: {e}")))?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let config = dir.join("config.yml");
            let yaml = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
                dir.join("data").display()
            );
            std::fs::write(&config, yaml)
                .map_err(|e| fail(format!("writing {}: {e}", config.display())))?;
            let log = std::fs::File::create(dir.join("registry.log"))
                .map_err(|e| fail(format!("creating registry.log: {e}")))?;
            let log2 = log
                .try_clone()
                .map_err(|e| fail(format!("registry.log: {e}")))?;
            use std::os::unix::process::CommandExt;
            let child = Command::new(program)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .process_group(0)
                .spawn()
                .map_err(|e| fail(format!("running {}: {e}", program.display())))?;
            if let Err(e) = reaper::record(dir, child.id()) {
                let mut child = child; // the reaper would not know it: stop it here
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("writing the registry's pidfile: {e}")));
            }
            let mut reg = Registry {
                addr,
                users: users.to_vec(),
                child: Mutex::new(child),
            };
            match reg.wait_ready(dir) {
                Ok(()) => return Ok(reg),
                Err(e) => {
                    if let Ok(c) = reg.child.get_mut() {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    last = e;
                }
            }
        }
        Err(fail(last))
    }

    fn wait_ready(&mut self, dir: &Path) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Ok(a) = http::get_tcp(self.addr, "/v2/", &[]) {
                if a.status == 200 || a.status == 401 {
                    return Ok(());
                }
            }
            let log = || std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
            let exited = self
                .child
                .get_mut()
                .ok()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(format!("docker-registry exited ({status}):\n{}", log()));
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "docker-registry did not answer /v2/ within 30 s:\n{}",
                    log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(super) fn reap(&self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.try_wait();
        }
    }

    /// Where it listens: 127.0.0.1:PORT.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// "127.0.0.1:PORT", the registry part of an image name.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The htpasswd users it was started with (user, password); empty = open.
    pub fn users(&self) -> &[(String, String)] {
        &self.users
    }

    /// `GET path` on the registry's HTTP API, with basic auth as the first user when
    /// there are users, and these extra headers (e.g. an Accept for manifests).
    pub fn get(
        &self,
        path: &str,
        extra_headers: &[(&str, &str)],
    ) -> std::io::Result<http::HttpAnswer> {
        let mut headers: Vec<(&str, &str)> = extra_headers.to_vec();
        let basic;
        if let Some((user, password)) = self.users.first() {
            use base64::Engine;
            basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            );
            headers.push(("Authorization", &basic));
        }
        http::get_tcp(self.addr, path, &headers)
    }

    /// The image manifest of `repo:reference` (Docker v2 schema 2 or OCI), as JSON.
    pub fn manifest(&self, repo: &str, reference: &str) -> std::io::Result<serde_json::Value> {
        let a = self.get(
            &format!("/v2/{repo}/manifests/{reference}"),
            &[(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
            )],
        )?;
        if a.status != 200 {
            return Err(std::io::Error::other(format!(
                "GET manifest {repo}:{reference}: HTTP {}: {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            )));
        }
        serde_json::from_slice(&a.body).map_err(std::io::Error::other)
    }

    /// The blob `digest` of `repo`, checked against its digest.
    pub fn blob(&self, repo: &str, digest: &str) -> std::io::Result<Vec<u8>> {
        let a = self.get(&format!("/v2/{repo}/blobs/{digest}"), &[])?;
        if a.status != 200 {
            return Err(std::io::Error::other(format!(
                "GET blob {repo}@{digest}: HTTP {}",
                a.status
            )));
        }
        use sha2::Digest;
        let got = format!("sha256:{:x}", sha2::Sha256::digest(&a.body));
        if got != digest {
            return Err(std::io::Error::other(format!(
                "blob {repo}@{digest} has digest {got}"
            )));
        }
        Ok(a.body)
    }

    /// Every regular file of every layer of `repo:reference`, in layer order, as
    /// (path without a leading `./` or `/`, contents). gzip layers are unpacked.
    pub fn layer_files(
        &self,
        repo: &str,
        reference: &str,
    ) -> std::io::Result<Vec<(String, Vec<u8>)>> {
        let manifest = self.manifest(repo, reference)?;
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        let mut out = Vec::new();
        for layer in layers {
            let digest = layer["digest"].as_str().unwrap_or_default();
            let mut data = self.blob(repo, digest)?;
            if data.starts_with(&[0x1f, 0x8b]) {
                let mut plain = Vec::new();
                let mut gz = flate2::read::GzDecoder::new(&data[..]);
                std::io::Read::read_to_end(&mut gz, &mut plain)?;
                data = plain;
            }
            let files = crate::standin::tar::files(&data).ok_or_else(|| {
                std::io::Error::other(format!("layer {digest} of {repo}:{reference} is not a tar"))
            })?;
            out.extend(
                files
                    .into_iter()
                    .map(|(name, body)| (name.trim_start_matches('/').to_string(), body.to_vec())),
            );
        }
        Ok(out)
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
