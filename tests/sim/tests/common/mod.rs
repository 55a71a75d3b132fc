//! Helpers shared by the sim's conformance tests: a cluster with known pods and users,
//! and the real kubectl pointed at it with a private HOME (its discovery cache).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use kube_sim::{PodConfig, Rule, Sim, SimConfig, UserConfig};

pub const NS: &str = "ns1";
pub const MIB: u64 = 1024 * 1024;

/// Pods in ns1 with varied labels, a multi-container pod, and users admin / noexec.
pub fn cluster() -> SimConfig {
    let pod = |name: &str, labels: &[(&str, &str)]| PodConfig::new(NS, name).with_labels(labels);
    let mut web = pod("web-0", &[("app", "web")]);
    web.containers = vec!["nginx".into(), "sidecar".into()];
    let mut pending = pod(
        "buildkitd-pending",
        &[("app", "buildkitd"), ("tier", "cold")],
    );
    pending.phase = "Pending".into();
    pending.ready = false;
    SimConfig {
        namespaces: vec!["default".into(), NS.into()],
        pods: vec![
            pod("buildkitd-0", &[("app", "buildkitd"), ("tier", "hot")]),
            pod("buildkitd-1", &[("app", "buildkitd"), ("tier", "warm")]),
            pod(
                "buildkitd-2",
                &[("app", "buildkitd"), ("tier", "cold"), ("canary", "")],
            ),
            pending,
            web,
            pod("plain", &[]),
            PodConfig::new("other", "buildkitd-x"),
        ],
        users: vec![
            UserConfig::admin(),
            UserConfig::new(
                "noexec",
                vec![
                    Rule::new(&["get", "list", "watch"], &["pods", "namespaces"]),
                    Rule::new(&["create"], &["pods/portforward"]),
                ],
            ),
        ],
        context_namespace: Some(NS.into()),
        ..SimConfig::default()
    }
}

/// The real kubectl with a clean environment: its own HOME and the sim's kubeconfig.
pub fn kubectl(sim: &Sim, home: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(kube_sim::harness::kubectl_on_path());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("KUBECONFIG", sim.kubeconfig())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Run kubectl to completion (bounded), returning its output.
pub async fn run(sim: &Sim, home: &Path, args: &[&str]) -> Output {
    let child = kubectl(sim, home)
        .args(args)
        .spawn()
        .expect("spawn kubectl");
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
        .expect("kubectl output")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A raw WebSocket to the sim's API server (TLS checked against the kubeconfig's CA).
pub type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// The PEM the kubeconfig names as certificate-authority-data.
fn sim_ca(sim: &Sim) -> Vec<u8> {
    use base64::Engine;
    let text = std::fs::read_to_string(sim.kubeconfig()).expect("kubeconfig");
    let kc: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig yaml");
    let ca = kc["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .expect("certificate-authority-data");
    base64::engine::general_purpose::STANDARD
        .decode(ca)
        .expect("base64 CA")
}

/// Open a WebSocket to `path_and_query` as `user`, offering `protocols` (in order), the
/// way kube-rs and kubectl do: bearer token, TLS, HTTP/1.1 upgrade. Ok: the stream and
/// the subprotocol the server chose. Err: the refusal's HTTP status and body.
pub async fn ws_connect(
    sim: &Sim,
    user: &str,
    path_and_query: &str,
    protocols: &[&str],
) -> Result<(RawWs, Option<String>), (u16, String)> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Error;

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&sim_ca(sim)) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let hostport = sim.url().trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&hostport)
        .await
        .expect("connect to the API server");
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS handshake with the API server");
    let mut req = format!("wss://{hostport}{path_and_query}")
        .into_client_request()
        .expect("request");
    let token = sim.token(user).expect("known user");
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    if !protocols.is_empty() {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            protocols.join(", ").parse().expect("header"),
        );
    }
    match tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::client_async(req, tls),
    )
    .await
    .expect("upgrade answered in time")
    {
        Ok((ws, resp)) => {
            let chosen = resp
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            Ok((ws, chosen))
        }
        Err(Error::Http(resp)) => Err((
            resp.status().as_u16(),
            text(resp.body().as_deref().unwrap_or_default()),
        )),
        Err(e) => panic!("WebSocket upgrade failed: {e}"),
    }
}

/// The next message the server sent, whatever it is (bounded).
pub async fn ws_next(ws: &mut RawWs) -> tokio_tungstenite::tungstenite::Message {
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .expect("a message in time")
        .expect("the stream is open")
        .expect("a well-formed message")
}
