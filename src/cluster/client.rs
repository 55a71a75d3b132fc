//! The HTTP stack under kube's `Client`, assembled from kube's public layers over a
//! connector with TCP_NODELAY.
//!
//! kube's default connector leaves Nagle's algorithm on. A tunnel is a run of small
//! writes (HTTP/2 frames of a gRPC call inside an exec or port-forward stream): with
//! Nagle each write after the first waited for the API server's delayed ACK, ~40 ms
//! a round, and a no-op build took 180 ms instead of 50. kubectl (Go) sets
//! TCP_NODELAY on every connection; so do we.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ConfigExt};
use kube::{Client, Config};
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// A client for `config`: kube's layers (base URI, retries, authentication with
/// exec plugins and token files, impersonation headers) and its TLS settings, over
/// a connector that sends small writes at once. With a proxy in the kubeconfig,
/// kube's own builder, which knows how to tunnel through it.
pub fn build(config: Config) -> kube::Result<Client> {
    if config.proxy_url.is_some() {
        return Client::try_from(config);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http_client: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Builder::new(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http_client);
    Ok(Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use std::os::fd::RawFd;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Whether the socket of ours bound to local `port` has TCP_NODELAY, found by
    /// looking at every descriptor this process holds.
    fn nodelay_of_local_port(port: u16) -> Option<bool> {
        for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
            let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
                continue;
            };
            let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: addr and len describe a sockaddr_in buffer we own.
            let rc = unsafe { libc::getsockname(fd, &mut addr as *mut _ as *mut _, &mut len) };
            if rc != 0 || addr.sin_family != libc::AF_INET as libc::sa_family_t {
                continue;
            }
            if u16::from_be(addr.sin_port) != port {
                continue;
            }
            let mut on: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: on and len describe a c_int buffer we own.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    &mut on as *mut _ as *mut _,
                    &mut len,
                )
            };
            if rc == 0 {
                return Some(on != 0);
            }
        }
        None
    }

    #[tokio::test]
    async fn the_api_connection_sends_small_writes_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut sock, peer) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await.unwrap();
            // Look at the client's end while the request is open.
            let nodelay = nodelay_of_local_port(peer.port());
            let body = r#"{"major":"1","minor":"33","gitVersion":"v1.33.0"}"#;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(reply.as_bytes()).await.unwrap();
            nodelay
        });
        let config = kube::Config::new(url.parse().unwrap());
        let client = super::build(config).expect("client");
        client.apiserver_version().await.expect("version");
        assert_eq!(
            server.await.unwrap(),
            Some(true),
            "the client's socket to the API server must have TCP_NODELAY"
        );
    }
}
