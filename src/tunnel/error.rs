//! Why a pod could not take a connection, or why its stream failed: one typed
//! vocabulary for the tunnel layer. Every failure carries its pod; `Display` is the
//! user's message (it names the pod once) with the fix where there is one.

use std::time::Duration;

use crate::cluster::humantime;

/// One pod's failure to open, or keep, a stream to its buildkitd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    /// The API server refused the exec or port-forward for this user (403).
    #[error("pod {pod}: {resource} is forbidden for this user in namespace {namespace}: {hint} ({message})")]
    Forbidden {
        pod: String,
        /// `pods/exec` or `pods/portforward`: what to grant `create` on.
        resource: &'static str,
        namespace: String,
        hint: &'static str,
        message: String,
    },
    /// The pod no longer exists (404): deleted since it was listed.
    #[error("pod {pod}: the pod is gone (deleted since it was listed?): {message}")]
    PodGone { pod: String, message: String },
    /// The pod has several containers and none was named (400).
    #[error(
        "pod {pod}: the API server refused the {transport} (400): {message}; pass the \
         buildkitd container with --container NAME"
    )]
    ContainerRequired {
        pod: String,
        transport: String,
        message: String,
    },
    /// Any other status the API server answered the upgrade with.
    #[error("pod {pod}: the API server refused the {transport} ({code}): {message}")]
    ApiStatus {
        pod: String,
        transport: String,
        code: u16,
        message: String,
    },
    /// The API server did not open the stream within the request timeout.
    #[error("pod {pod}: the API server did not open the {transport} stream within {}", humantime(*after))]
    Timeout {
        pod: String,
        transport: String,
        after: Duration,
    },
    /// The API server could not be asked (unreachable, credentials, ...); the message
    /// comes from the cluster layer and names the server, the context and the pod.
    #[error("{message}")]
    Api { pod: String, message: String },
    /// `buildctl dial-stdio` could not start in the container (exit 126/127).
    #[error(
        "`buildctl dial-stdio` could not run in pod {pod} (exit {code}): is buildctl installed \
         in that container? pick the buildkitd container with --container{}",
        stderr_note(stderr)
    )]
    BuildctlMissing {
        pod: String,
        code: i32,
        stderr: String,
    },
    /// `buildctl dial-stdio` ran and exited non-zero.
    #[error(
        "`buildctl dial-stdio` in pod {pod} exited with code {code}{}",
        stderr_note(stderr)
    )]
    Exited {
        pod: String,
        code: i32,
        stderr: String,
    },
    /// The exec failed with a status that carries no exit code.
    #[error("exec in pod {pod} failed: {message}{}", stderr_note(stderr))]
    ExecFailed {
        pod: String,
        message: String,
        stderr: String,
    },
    /// The exec stream ended without the status message that ends every exec.
    #[error(
        "the exec stream to pod {pod} closed without an exit status{}",
        stderr_note(stderr)
    )]
    ClosedWithoutStatus { pod: String, stderr: String },
    /// The kubelet reported an error on the forwarded port (nothing listening, ...).
    #[error("port {port} of pod {pod}: {message}")]
    PortForward {
        pod: String,
        port: u16,
        message: String,
    },
    /// The WebSocket under the stream failed.
    #[error("stream to pod {pod} broke: {reason}")]
    StreamBroken { pod: String, reason: String },
    /// The stream ended cleanly before the pod sent a byte.
    #[error("pod {pod}: the stream ended before the pod sent anything")]
    NoAnswer { pod: String },
    /// Writing to the pod failed.
    #[error("pod {pod}: sending to the pod failed: {reason}")]
    SendFailed { pod: String, reason: String },
    /// The client sent more than we keep for replay before the pod answered, so the
    /// connection cannot move to another pod.
    #[error(
        "buildctl sent more than {limit_mib} MiB before pod {pod} answered, so the \
         connection cannot move to another pod"
    )]
    ReplayLimit { pod: String, limit_mib: usize },
}

impl TunnelError {
    /// The pod this failure belongs to.
    pub fn pod(&self) -> &str {
        match self {
            TunnelError::Forbidden { pod, .. }
            | TunnelError::PodGone { pod, .. }
            | TunnelError::ContainerRequired { pod, .. }
            | TunnelError::ApiStatus { pod, .. }
            | TunnelError::Timeout { pod, .. }
            | TunnelError::Api { pod, .. }
            | TunnelError::BuildctlMissing { pod, .. }
            | TunnelError::Exited { pod, .. }
            | TunnelError::ExecFailed { pod, .. }
            | TunnelError::ClosedWithoutStatus { pod, .. }
            | TunnelError::PortForward { pod, .. }
            | TunnelError::StreamBroken { pod, .. }
            | TunnelError::NoAnswer { pod }
            | TunnelError::SendFailed { pod, .. }
            | TunnelError::ReplayLimit { pod, .. } => pod,
        }
    }
}

fn stderr_note(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(" (stderr: {s})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_names_its_pod_once() {
        let pod = "bk-1".to_string();
        let all = [
            TunnelError::PodGone {
                pod: pod.clone(),
                message: "pods \"bk-1\" not found".into(),
            },
            TunnelError::NoAnswer { pod: pod.clone() },
            TunnelError::Exited {
                pod: pod.clone(),
                code: 1,
                stderr: String::new(),
            },
            TunnelError::StreamBroken {
                pod: pod.clone(),
                reason: "reset".into(),
            },
        ];
        for e in &all {
            let text = e.to_string();
            assert_eq!(e.pod(), "bk-1");
            assert_eq!(text.matches("pod bk-1").count(), 1, "{text}");
        }
    }

    #[test]
    fn stderr_is_shown_only_when_there_is_some() {
        let e = |stderr: &str| TunnelError::Exited {
            pod: "p".into(),
            code: 2,
            stderr: stderr.into(),
        };
        assert_eq!(
            e("  ").to_string(),
            "`buildctl dial-stdio` in pod p exited with code 2"
        );
        assert!(e("boom\n").to_string().ends_with(" (stderr: boom)"));
    }
}
