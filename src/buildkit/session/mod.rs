//! The session: inside `Control.Session` the daemon is the HTTP/2 client and we serve
//! gRPC to it (filesync, filesend, secrets, ssh, auth, health).

pub mod auth;
mod export_sink;
pub mod filesend;
pub mod ssh;
#[cfg(test)]
pub mod test_transport;
