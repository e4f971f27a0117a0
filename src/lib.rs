//! kiln: a rootless, daemonless container image builder behind the
//! OpenFaaS Function Builder API. See `README.md` for the architecture.

pub mod api;
pub mod blocking;
pub mod buildsecrets;
pub mod chunks;
pub mod client;
pub mod dockerignore;
pub mod doctor;
pub mod egress;
pub mod errors;
pub mod exporter;
pub mod frontend;
pub mod glob;
pub mod graph;
pub mod imagepolicy;
pub mod keylock;
pub mod metrics;
pub mod oci;
pub mod platform;
pub mod registry;
pub mod solver;
pub mod sources;
pub mod spawner;
pub mod tenant;
pub mod text;
pub mod timefmt;
pub mod units;
pub mod wire;
pub mod worker;
