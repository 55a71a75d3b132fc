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
