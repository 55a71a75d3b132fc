//! kubectl's port-forward over SPDY/3.1, served the way the kubelet serves it.
//!
//! kubectl (1.30+) first tries a WebSocket upgrade offering the subprotocol
//! `SPDY/3.1+portforward.k8s.io`, whose binary messages carry the raw SPDY byte
//! stream ([`serve_portforward_ws`]); if that upgrade fails (or with
//! `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`) it POSTs with `Upgrade: SPDY/3.1` and speaks
//! SPDY on the upgraded connection itself ([`serve_portforward`]).
//!
//! Per local connection kubectl opens an error stream (`streamtype: error`, half-closed
//! at once) and a data stream (`streamtype: data`), both with headers `port` and
//! `requestid`. We reply SYN_REPLY to every SYN_STREAM, connect to the pod's port once a
//! pair is complete and relay bytes. A failed connect is reported as text on the error
//! stream (kubectl prints it and gives up the whole session). When the pod side ends we
//! send DATA+FIN on the data and the error stream.
//!
//! [`frame`] and [`headers`] are the wire codec, public so tests can play the client.

pub mod frame;
pub mod headers;
mod session;

pub use session::{serve_portforward, serve_portforward_ws};
