//! The local end of a tunnel, where buildctl connects: a unix socket in a fresh 0700
//! directory (socket 0600) by default, or 127.0.0.1:PORT; never another address.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where to listen, from `--listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A socket in a fresh private directory (removed with the tunnel).
    Auto,
    /// unix:///PATH: a socket at PATH (the socket, not its directory, is ours).
    Unix(PathBuf),
    /// tcp://127.0.0.1:PORT (0 = any free port).
    Tcp(u16),
}

/// Parse `--listen`: unix:///abs/path or tcp://127.0.0.1:PORT (also localhost).
pub fn parse_listen(s: &str) -> Result<Listen> {
    if let Some(path) = s.strip_prefix("unix://") {
        if path.is_empty() || !path.starts_with('/') {
            bail!("--listen {s:?}: a unix socket needs an absolute path, e.g. unix:///tmp/buildkit.sock");
        }
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    if let Some(hostport) = s.strip_prefix("tcp://") {
        let (host, port) = hostport.rsplit_once(':').with_context(|| {
            format!("--listen {s:?}: give a port, e.g. tcp://127.0.0.1:1234 (0 picks a free one)")
        })?;
        if host != "127.0.0.1" && host != "localhost" {
            bail!(
                "--listen {s:?}: the tunnel only listens on 127.0.0.1 (anyone who can reach it \
                 can use your buildkitd); use tcp://127.0.0.1:{port}"
            );
        }
        let port: u16 = port
            .parse()
            .with_context(|| format!("--listen {s:?}: {port:?} is not a port number (0-65535)"))?;
        return Ok(Listen::Tcp(port));
    }
    bail!("--listen {s:?}: use unix:///PATH or tcp://127.0.0.1:PORT")
}

/// A bound local endpoint. Dropping it removes what it created on disk.
pub struct Endpoint {
    pub listener: Listener,
    /// The address for buildctl's --addr / BUILDKIT_HOST.
    pub address: String,
    cleanup: Cleanup,
}

pub enum Listener {
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

enum Cleanup {
    None,
    Socket(PathBuf),
    Dir(PathBuf),
}

impl Endpoint {
    pub async fn bind(listen: &Listen) -> Result<Endpoint> {
        match listen {
            #[cfg(unix)]
            Listen::Auto => {
                let dir = private_dir()?;
                let sock = dir.join("buildkitd.sock");
                match bind_unix(&sock) {
                    Ok(l) => Ok(Endpoint {
                        address: format!("unix://{}", sock.display()),
                        listener: Listener::Unix(l),
                        cleanup: Cleanup::Dir(dir),
                    }),
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&dir);
                        Err(e)
                    }
                }
            }
            #[cfg(not(unix))]
            Listen::Auto => Self::bind_tcp(0).await,
            #[cfg(unix)]
            Listen::Unix(path) => {
                if path.exists() {
                    bail!(
                        "--listen unix://{}: something already exists there; remove it or pick another path",
                        path.display()
                    );
                }
                let l = bind_unix(path)?;
                Ok(Endpoint {
                    address: format!("unix://{}", path.display()),
                    listener: Listener::Unix(l),
                    cleanup: Cleanup::Socket(path.clone()),
                })
            }
            #[cfg(not(unix))]
            Listen::Unix(_) => {
                bail!("--listen unix:// is not available on this system; use tcp://127.0.0.1:PORT")
            }
            Listen::Tcp(port) => Self::bind_tcp(*port).await,
        }
    }

    async fn bind_tcp(port: u16) -> Result<Endpoint> {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
        let addr = l.local_addr()?;
        Ok(Endpoint {
            address: format!("tcp://{addr}"),
            listener: Listener::Tcp(l),
            cleanup: Cleanup::None,
        })
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::None => {}
            Cleanup::Socket(p) => {
                let _ = std::fs::remove_file(p);
            }
            Cleanup::Dir(d) => {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
}

#[cfg(unix)]
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    // Create the socket with no group/other bits from the start, then make it 0600.
    let old = unsafe { libc::umask(0o177) };
    let bound = tokio::net::UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let l = bound.with_context(|| format!("cannot listen on unix socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    Ok(l)
}

/// A fresh directory, mode 0700, under $TMPDIR (or /tmp).
#[cfg(unix)]
fn private_dir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    for attempt in 0..100u32 {
        let name = format!(
            "kubectl-buildkit-{}-{:x}",
            std::process::id(),
            seed.wrapping_add(attempt as u128 * 7919)
        );
        let dir = base.join(name);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot create a private directory in {}", base.display())
                })
            }
        }
    }
    bail!("cannot create a private directory in {}", base.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("unix:///tmp/x.sock").unwrap(),
            Listen::Unix("/tmp/x.sock".into())
        );
        assert_eq!(parse_listen("tcp://127.0.0.1:0").unwrap(), Listen::Tcp(0));
        assert_eq!(
            parse_listen("tcp://localhost:1234").unwrap(),
            Listen::Tcp(1234)
        );
        for bad in [
            "tcp://0.0.0.0:1",
            "tcp://10.0.0.1:1",
            "tcp://127.0.0.1",
            "tcp://127.0.0.1:x",
            "unix://rel",
            "http://x",
            "",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn private_socket_is_0600_in_0700_dir_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let ep = Endpoint::bind(&Listen::Auto).await.unwrap();
        let path = PathBuf::from(ep.address.strip_prefix("unix://").unwrap());
        let dir = path.parent().unwrap().to_path_buf();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(ep);
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn tcp_binds_loopback_only() {
        let ep = Endpoint::bind(&Listen::Tcp(0)).await.unwrap();
        assert!(ep.address.starts_with("tcp://127.0.0.1:"), "{}", ep.address);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary input never panics, and never yields anything but loopback TCP or an
        /// absolute unix path.
        #[test]
        fn only_loopback_or_absolute_paths(s in "\\PC{0,60}|(tcp|unix)://\\PC{0,30}|tcp://[a-z0-9.:\\[\\]]{0,20}:[0-9]{0,6}") {
            match parse_listen(&s) {
                Ok(Listen::Tcp(port)) => {
                    prop_assert!(s.ends_with(&port.to_string()), "{:?}", s);
                    let host = s.strip_prefix("tcp://").unwrap().rsplit_once(':').unwrap().0;
                    prop_assert!(host == "127.0.0.1" || host == "localhost", "{:?}", s);
                }
                Ok(Listen::Unix(p)) => prop_assert!(p.is_absolute(), "{:?}", s),
                Ok(Listen::Auto) => prop_assert!(false, "Auto from {:?}", s),
                Err(e) => prop_assert!(e.to_string().contains("--listen"), "{}", e),
            }
        }

        /// Valid addresses round-trip; other hosts are refused.
        #[test]
        fn valid_addresses_round_trip(port in any::<u16>(), path in "(/[a-zA-Z0-9._-]{1,12}){1,5}", host in "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}|[a-z]{1,10}|\\[::\\]|0\\.0\\.0\\.0") {
            prop_assert_eq!(parse_listen(&format!("tcp://127.0.0.1:{port}")).unwrap(), Listen::Tcp(port));
            prop_assert_eq!(parse_listen(&format!("tcp://localhost:{port}")).unwrap(), Listen::Tcp(port));
            prop_assert_eq!(parse_listen(&format!("unix://{path}")).unwrap(), Listen::Unix(PathBuf::from(&path)));
            if host != "127.0.0.1" && host != "localhost" {
                let other = format!("tcp://{host}:{port}");
                prop_assert!(parse_listen(&other).is_err(), "{}", other);
            }
        }
    }
}
