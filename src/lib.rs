//! kiln: a rootless, daemonless container image builder behind the
//! OpenFaaS Function Builder API. See `README.md` for the architecture.
//!
//! Public modules are what the binary, the tests, the benches and the fuzz
//! targets use; the rest are the library's own.

pub mod api;
pub mod attest;
mod blocking;
pub mod buildsecrets;
pub mod chmod;
mod chunks;
pub mod client;
mod dockerignore;
pub mod doctor;
pub mod egress;
mod errors;
mod exporter;
pub mod frontend;
mod glob;
mod gofmt;
pub mod graph;
pub mod history;
pub mod imagepolicy;
mod keylock;
mod metrics;
mod oci;
pub mod platform;
pub mod registry;
pub mod solver;
mod sources;
mod spawner;
pub mod tenant;
mod text;
pub mod timefmt;
pub mod units;
pub mod verify;
pub mod wire;
pub mod worker;
