//! The API server: TLS accept loop, hyper HTTP/1.1 with upgrades, authentication,
//! the request log, latency faults and routing to the handlers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::{self, Attributes};
use crate::config::UserConfig;
use crate::selector::Selector;
use crate::state::{RequestRecord, State};
use crate::status::{self, bad_request, json_ok, method_not_allowed, no_route, not_found, Resp};
use crate::{api, exec, portforward, table};

/// What a handler knows about the request besides the request itself.
pub struct Ctx {
    pub state: Arc<State>,
    pub user: UserConfig,
    pub query: Vec<(String, String)>,
    pub server_addr: String,
    /// The client asked for a server-side-printed Table (kubectl's human output).
    pub wants_table: bool,
}

impl Ctx {
    pub fn query_all(&self, key: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decode a query component (`+` is a space).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Accept TLS connections and serve them until the runtime stops.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, state: Arc<State>) {
    let acceptor = TlsAcceptor::from(tls);
    let server_addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    while let Ok((sock, _)) = listener.accept().await {
        let _ = sock.set_nodelay(true);
        let (acceptor, state, server_addr) = (acceptor.clone(), state.clone(), server_addr.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await
            else {
                return;
            };
            let service = service_fn(move |req| {
                let (state, server_addr) = (state.clone(), server_addr.clone());
                async move { Ok::<_, Infallible>(answer(req, state, server_addr).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn answer(req: Request<Incoming>, state: Arc<State>, server_addr: String) -> Resp {
    state.arrived(req.method().as_str(), req.uri().path());
    let latency = state.faults().api_latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let header = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = auth::authenticate(header, state.users()).cloned();
    let resp = match user.clone() {
        None => status::unauthorized(),
        Some(user) => {
            let wants_table = req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("as=Table"));
            let ctx = Ctx {
                state: state.clone(),
                user,
                query: parse_query(query.as_deref()),
                server_addr,
                wants_table,
            };
            if crate::resources::serves(req.method(), req.uri().path()) {
                crate::resources::answer(req, &ctx).await
            } else {
                route(req, &ctx)
            }
        }
    };
    state.record(RequestRecord {
        method,
        path,
        query,
        user: user.map(|u| u.name),
        status: resp.status().as_u16(),
    });
    resp
}

fn route(req: Request<Incoming>, ctx: &Ctx) -> Resp {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get = req.method() == Method::GET;
    let upgrade_method = get || req.method() == Method::POST;
    match segs.as_slice() {
        ["version"] if get => json_ok(&api::version()),
        ["api"] if get => json_ok(&api::api_versions(&ctx.server_addr)),
        ["apis"] if get => json_ok(&api::api_groups()),
        ["api", "v1"] if get => json_ok(&api::core_v1_resources()),
        ["api", "v1", "namespaces"] if get => list_namespaces(ctx),
        ["api", "v1", "namespaces", ns] if get => get_namespace(ctx, ns),
        ["api", "v1", "pods"] if get => list_pods(ctx, None),
        ["api", "v1", "namespaces", ns, "pods"] if get => list_pods(ctx, Some(ns)),
        ["api", "v1", "namespaces", ns, "pods", name] if get => get_pod(ctx, ns, name),
        ["api", "v1", "namespaces", ns, "pods", name, "exec"] if upgrade_method => {
            let (ns, name) = (ns.to_string(), name.to_string());
            exec::handle(req, ctx, &ns, &name)
        }
        ["api", "v1", "namespaces", ns, "pods", name, "portforward"] if upgrade_method => {
            let (ns, name) = (ns.to_string(), name.to_string());
            portforward::handle(req, ctx, &ns, &name)
        }
        ["version"]
        | ["api"]
        | ["apis"]
        | ["api", "v1"]
        | ["api", "v1", "namespaces"]
        | ["api", "v1", "namespaces", _]
        | ["api", "v1", "pods"]
        | ["api", "v1", "namespaces", _, "pods"]
        | ["api", "v1", "namespaces", _, "pods", _]
        | ["api", "v1", "namespaces", _, "pods", _, "exec" | "portforward"] => method_not_allowed(),
        _ => no_route(),
    }
}

fn list_namespaces(ctx: &Ctx) -> Resp {
    let a = Attributes {
        verb: "list",
        resource: "namespaces",
        namespace: None,
        name: None,
    };
    if let Some(r) = auth::refusal(&ctx.user, &a) {
        return r;
    }
    json_ok(&api::namespace_list(
        &ctx.state.namespaces(),
        ctx.state.started,
    ))
}

fn get_namespace(ctx: &Ctx, ns: &str) -> Resp {
    let a = Attributes {
        verb: "get",
        resource: "namespaces",
        namespace: Some(ns),
        name: Some(ns),
    };
    if let Some(r) = auth::refusal(&ctx.user, &a) {
        return r;
    }
    if !ctx.state.has_namespace(ns) {
        return not_found("namespaces", ns);
    }
    json_ok(&api::namespace(ns, ctx.state.started))
}

fn list_pods(ctx: &Ctx, ns: Option<&str>) -> Resp {
    let a = Attributes {
        verb: if ctx.query("watch").is_some_and(|w| w == "true" || w == "1") {
            "watch"
        } else {
            "list"
        },
        resource: "pods",
        namespace: ns,
        name: None,
    };
    if let Some(r) = auth::refusal(&ctx.user, &a) {
        return r;
    }
    let selector = match Selector::parse(ctx.query("labelSelector").unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return bad_request(&e),
    };
    let faults = ctx.state.faults();
    if let Some(code) = faults.list_error {
        let reason = status::reason_for(code);
        let message = match code {
            500 => "Internal error occurred: simulated pod list failure".to_string(),
            503 => "the server is currently unable to handle the request (get pods)".to_string(),
            _ => format!("simulated pod list failure ({code} {reason})"),
        };
        return status::failure(
            code,
            reason,
            &message,
            Some(serde_json::json!({"kind": "pods"})),
        );
    }
    if faults.list_garbage {
        return status::raw(
            hyper::StatusCode::OK,
            "application/json",
            &br#"{"kind":"PodList","apiVersion":"v1","items":[{"metadata":{"name":"buildk"#[..],
        );
    }
    let pods: Vec<_> = ctx
        .state
        .pods(ns)
        .into_iter()
        .filter(|p| selector.matches(&p.cfg.labels))
        .collect();
    if ctx.wants_table {
        return json_ok(&table::pod_table(&pods));
    }
    json_ok(&api::pod_list(&pods))
}

fn get_pod(ctx: &Ctx, ns: &str, name: &str) -> Resp {
    let a = Attributes {
        verb: "get",
        resource: "pods",
        namespace: Some(ns),
        name: Some(name),
    };
    if let Some(r) = auth::refusal(&ctx.user, &a) {
        return r;
    }
    match ctx.state.pod(ns, name).filter(|p| !p.cfg.faults.vanished) {
        None => not_found("pods", name),
        Some(p) if ctx.wants_table => json_ok(&table::pod_table(&[p])),
        Some(p) => json_ok(&api::pod(&p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query(Some(
            "labelSelector=app%3Dbuildkitd%2Ctier+in+%28a%2Cb%29&limit=500&command=sh&command=-c&command=exit%203&x",
        ));
        assert_eq!(
            q[0],
            ("labelSelector".into(), "app=buildkitd,tier in (a,b)".into())
        );
        assert_eq!(q[1], ("limit".into(), "500".into()));
        assert_eq!(q[4], ("command".into(), "exit 3".into()));
        assert_eq!(q[5], ("x".into(), "".into()));
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%4"), "%4");
    }
}
