//! The failover walk: pods in fallback order, first choice first, cut to
//! `max_failover + 1`; a pod that failed is passed over by later connections of the
//! same walk. Used by the local endpoint's relay and by any client that dials itself
//! ([`Failover::connect`]).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Mutex;

use super::connection::Connection;
use super::error::TunnelError;
use super::remote::dial;
use super::transport::Transport;
use crate::cluster::Cluster;

/// Why one pod was passed over: the tunnel failed, or the caller's probe did.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptFailure<E = std::convert::Infallible> {
    #[error(transparent)]
    Tunnel(TunnelError),
    #[error("pod {pod}: {error}")]
    Probe { pod: String, error: E },
}

impl<E> AttemptFailure<E> {
    pub fn pod(&self) -> &str {
        match self {
            AttemptFailure::Tunnel(e) => e.pod(),
            AttemptFailure::Probe { pod, .. } => pod,
        }
    }
}

/// No pod of the walk could be used: each attempt, in the order made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable<E = std::convert::Infallible> {
    pub attempts: Vec<AttemptFailure<E>>,
}

impl<E: std::fmt::Display> std::fmt::Display for Unreachable<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Earlier pods' reasons were reported as the walk moved on: the last in full.
        match (self.attempts.len(), self.attempts.last()) {
            (_, None) => f.write_str("no pod left to try"),
            (1, Some(only)) => write!(f, "{only}"),
            (n, Some(last)) => write!(f, "tried {n} pods, the last said: {last}"),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for Unreachable<E> {}

/// A pod that took the connection, what the probe made of it, and the pods passed
/// over before it.
#[derive(Debug)]
pub struct Reached<T, E = std::convert::Infallible> {
    pub pod: String,
    pub value: T,
    pub passed_over: Vec<AttemptFailure<E>>,
}

/// One walk over the fallback order, shared by every connection made through it.
pub struct Failover {
    cluster: Cluster,
    transport: Transport,
    candidates: Vec<String>,
    bad: Mutex<HashSet<String>>,
    served: Mutex<Vec<String>>,
}

impl Failover {
    /// `order` is the fallback order (first choice first); at most `max_failover + 1`
    /// pods of it are used.
    pub fn new(
        cluster: Cluster,
        transport: Transport,
        order: Vec<String>,
        max_failover: usize,
    ) -> Failover {
        let candidates = order
            .into_iter()
            .take(max_failover.saturating_add(1))
            .collect();
        Failover {
            cluster,
            transport,
            candidates,
            bad: Mutex::new(HashSet::new()),
            served: Mutex::new(Vec::new()),
        }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The pods this walk may use, first choice first.
    pub fn candidates(&self) -> &[String] {
        &self.candidates
    }

    /// The pod to try after `previous` (None: the first). Pods that already failed in
    /// this walk are skipped, unless nothing else is left for a first attempt.
    pub fn next_candidate(&self, previous: Option<&str>) -> Option<String> {
        let start = match previous {
            None => 0,
            Some(p) => self.candidates.iter().position(|c| c == p).map(|i| i + 1)?,
        };
        let rest = &self.candidates[start.min(self.candidates.len())..];
        let bad = self.bad.lock().expect("lock");
        rest.iter()
            .find(|p| !bad.contains(*p))
            .or(if previous.is_none() {
                rest.first()
            } else {
                None
            })
            .cloned()
    }

    /// `pod` failed: later connections pass it over.
    pub fn mark_bad(&self, pod: &str) {
        self.bad.lock().expect("lock").insert(pod.to_string());
    }

    /// `pod` served a connection.
    pub fn mark_served(&self, pod: &str) {
        let mut s = self.served.lock().expect("lock");
        if !s.iter().any(|p| p == pod) {
            s.push(pod.to_string());
        }
    }

    /// Pods that served at least one connection, in first-served order.
    pub fn served(&self) -> Vec<String> {
        self.served.lock().expect("lock").clone()
    }

    /// Open a stream to buildkitd in `pod` (any pod, in or out of the walk).
    pub async fn dial(&self, pod: &str) -> Result<Connection, TunnelError> {
        dial(&self.cluster, pod, &self.transport).await
    }

    /// For each candidate in order: dial it, hand the stream to `probe` (e.g. a gRPC
    /// handshake); the first pod whose probe succeeds is the answer. A pod whose dial
    /// or probe fails is marked bad and the walk moves on; `on_pass_over` hears of
    /// each as it happens (for a warning), before the next pod is dialled.
    pub async fn connect<T, E, F, Fut>(
        &self,
        mut probe: F,
        mut on_pass_over: impl FnMut(&AttemptFailure<E>, Option<&str>),
    ) -> Result<Reached<T, E>, Unreachable<E>>
    where
        F: FnMut(String, Connection) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempts: Vec<AttemptFailure<E>> = Vec::new();
        let mut previous: Option<String> = None;
        while let Some(pod) = self.next_candidate(previous.as_deref()) {
            if let Some(last) = attempts.last() {
                on_pass_over(last, Some(&pod));
            }
            previous = Some(pod.clone());
            let failure = match self.dial(&pod).await {
                Err(e) => AttemptFailure::Tunnel(e),
                Ok(conn) => match probe(pod.clone(), conn).await {
                    Ok(value) => {
                        self.mark_served(&pod);
                        return Ok(Reached {
                            pod,
                            value,
                            passed_over: attempts,
                        });
                    }
                    Err(error) => AttemptFailure::Probe {
                        pod: pod.clone(),
                        error,
                    },
                },
            };
            self.mark_bad(&pod);
            attempts.push(failure);
        }
        if let Some(last) = attempts.last() {
            on_pass_over(last, None);
        }
        Err(Unreachable { attempts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone(pod: &str) -> AttemptFailure {
        AttemptFailure::Tunnel(TunnelError::NoAnswer { pod: pod.into() })
    }

    #[test]
    fn unreachable_says_the_last_reason_in_full() {
        let none: Unreachable = Unreachable { attempts: vec![] };
        assert_eq!(none.to_string(), "no pod left to try");
        let one = Unreachable {
            attempts: vec![gone("a")],
        };
        assert_eq!(
            one.to_string(),
            "pod a: the stream ended before the pod sent anything"
        );
        let two = Unreachable {
            attempts: vec![gone("a"), gone("b")],
        };
        assert_eq!(
            two.to_string(),
            "tried 2 pods, the last said: pod b: the stream ended before the pod sent anything"
        );
        let probe: AttemptFailure<String> = AttemptFailure::Probe {
            pod: "c".into(),
            error: "no gRPC answer".into(),
        };
        assert_eq!(probe.to_string(), "pod c: no gRPC answer");
        assert_eq!(probe.pod(), "c");
    }
}
