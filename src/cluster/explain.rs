//! A kube error as a message a user can act on: what failed, where, and what to do.
//! Told apart by types (the status code, the kube variant, an `io::Error`'s kind in
//! its sources), never by the error's text.

use anyhow::anyhow;

/// Turn a kube error into a message that says what failed, where, and what to do.
pub fn explain_kube_error(
    what: &str,
    server: &str,
    context: &str,
    namespace: &str,
    e: kube::Error,
) -> anyhow::Error {
    match &e {
        kube::Error::Api(status) => {
            let code = status.code;
            let msg = status.message.as_str();
            match code {
                401 => anyhow!(
                    "{what}: the API server {server} rejected our credentials (401 Unauthorized, \
                     context {context}); log in again or fix the user in your kubeconfig"
                ),
                403 => anyhow!(
                    "{what}: forbidden (403, context {context}): {msg}; ask a cluster admin for \
                     this permission (see example/k8s_buildkitd/rbac.yaml for the Role we need)"
                ),
                404 => anyhow!(
                    "{what}: not found (404, context {context}, namespace {namespace}): {msg}"
                ),
                400 => anyhow!("{what}: the API server refused the request (400): {msg}"),
                _ => anyhow!("{what}: the API server {server} answered {code}: {msg}"),
            }
        }
        _ if credential_plugin_failure(&e).is_some() => anyhow!(
            "{what}: the kubeconfig's credential plugin failed (context {context}): {}; run the \
             plugin by hand to see why, or log in again",
            credential_plugin_failure(&e).unwrap_or_default()
        ),
        _ => {
            let chain = error_chain(&e);
            match transport_failure(&e) {
                TransportFailure::Unreachable => anyhow!(
                    "{what}: cannot reach the API server {server} (context {context}): {chain}; \
                     is the cluster up, and is this the right context?"
                ),
                TransportFailure::TimedOut => anyhow!(
                    "{what}: the API server {server} (context {context}) timed out: {chain}; \
                     check the network, or raise --request-timeout"
                ),
                TransportFailure::Unreadable => anyhow!(
                    "{what}: the API server {server} sent a response we cannot read: {chain}; \
                     is {server} really a Kubernetes API server?"
                ),
                TransportFailure::Other => {
                    anyhow!("{what}: {chain} (server {server}, context {context})")
                }
            }
        }
    }
}

/// What kind of failure below the API a kube error is, told by its types (the kube
/// variant, an `io::Error`'s kind or a timer's elapse somewhere in its sources), never
/// by its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransportFailure {
    Unreachable,
    TimedOut,
    Unreadable,
    Other,
}

fn transport_failure(e: &kube::Error) -> TransportFailure {
    use std::io::ErrorKind;
    if matches!(e, kube::Error::SerdeError(_)) {
        return TransportFailure::Unreadable;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::NotConnected
                | ErrorKind::AddrNotAvailable
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable => return TransportFailure::Unreachable,
                ErrorKind::TimedOut => return TransportFailure::TimedOut,
                _ => {}
            }
        }
        if err.is::<tokio::time::error::Elapsed>() {
            return TransportFailure::TimedOut;
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return TransportFailure::TimedOut;
            }
            if h.is_parse() {
                return TransportFailure::Unreadable;
            }
        }
        if err.is::<serde_json::Error>() {
            return TransportFailure::Unreadable;
        }
        cur = err.source();
    }
    TransportFailure::Other
}

/// Why an exec credential plugin failed, without its stdout (which may hold a token)
/// or its command line (which may hold secrets): its exit status and stderr only.
pub(super) fn credential_plugin_failure(e: &kube::Error) -> Option<String> {
    use kube::client::AuthError;
    let kube::Error::Auth(auth) = e else {
        return None;
    };
    Some(match auth {
        AuthError::AuthExecStart(io) => format!("it could not be started: {io}"),
        AuthError::AuthExecRun { out, .. } => {
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim();
            let tail: String = err
                .chars()
                .rev()
                .take(1000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if tail.is_empty() {
                format!("it exited with {}", out.status)
            } else {
                format!("it exited with {}: {tail}", out.status)
            }
        }
        AuthError::AuthExecParse(_) => "its output is not a valid ExecCredential".to_string(),
        AuthError::AuthExec(_) | AuthError::AuthExecSerialize(_) => {
            "it did not produce a credential".to_string()
        }
        _ => return None,
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let part = inner.to_string();
        if !s.contains(&part) {
            s.push_str(": ");
            s.push_str(&part);
        }
        cur = inner.source();
    }
    s
}
