//! The API server's TLS identity: a self-signed certificate for 127.0.0.1 and localhost,
//! served with ALPN http/1.1 only (clients must not try HTTP/2: upgrades need HTTP/1.1).

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct ServerIdentity {
    /// PEM of the certificate: the kubeconfig's certificate-authority-data.
    pub cert_pem: String,
    pub config: Arc<rustls::ServerConfig>,
}

pub fn server_identity() -> anyhow::Result<ServerIdentity> {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .context("generating the API server certificate")?;
    let cert_der = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key)
        .context("TLS server certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerIdentity {
        cert_pem: ck.cert.pem(),
        config: Arc::new(config),
    })
}
