//! The pure part of `kubectl buildkit build`: flags + skaffold's environment -> one
//! [`spec::BuildSpec`] -> argv for buildctl or for docker. No processes, no network.

pub mod attrs;
pub mod buildctl;
pub mod builtin;
pub mod csv;
pub mod docker;
pub mod files;
pub mod kv;
pub mod options;
pub mod skaffold;
pub mod spec;
