//! One module per subcommand: thin glue between the CLI and the library modules.
pub mod build;
pub mod completion;
pub mod create;
pub mod pods;
pub mod ring;
pub mod rm;
pub mod tunnel;
pub mod version;
