//! Builders: a StatefulSet of buildkitd pods and what goes with it, made by `create` and
//! removed by `rm`. `spec` is the plain description, `manifest` turns it into objects
//! (pure), `apply` writes them (server-side apply, all or nothing), `wait` watches the
//! pods come up, `remove` deletes a builder by its label.
pub mod apply;
pub mod manifest;
pub mod remove;
pub mod spec;
pub mod wait;
