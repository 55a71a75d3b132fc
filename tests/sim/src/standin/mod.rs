//! Stand-ins for the real `buildctl` and `docker` command-line tools.
//!
//! The binaries `buildctl` and `docker` of this crate (src/bin) are thin wrappers
//! around [`buildctl::main`] and [`docker::main`]. Both append one JSON line per
//! invocation to a record file (SIM_BUILDCTL_RECORD / SIM_DOCKER_RECORD) so tests
//! can assert exactly how the plugin ran them.
//!
//! The flag parsers mimic the real tools: [`urfave`] follows urfave/cli v3 (used by
//! buildctl v0.32), [`pflag`] follows spf13/pflag + cobra (used by the docker CLI).
pub mod buildctl;
pub mod csv;
pub mod docker;
pub mod image;
pub mod pflag;
pub mod record;
pub mod tar;
pub mod urfave;
