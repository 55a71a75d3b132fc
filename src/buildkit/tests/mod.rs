//! The client against a REAL BuildKit (dockerd's, v0.8): what the daemon built is
//! checked from what it produced, never from our own logs.

mod real;
