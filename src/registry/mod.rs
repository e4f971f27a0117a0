//! A distribution-API client: pull manifests and blobs into the content
//! store, push blobs and manifests, with anonymous, Basic and Bearer-token
//! auth from a Docker `config.json`.

mod auth;
mod client;
pub mod conformance;
mod credential;
pub mod helpers;
#[cfg(test)]
pub(crate) mod memory;
pub mod present;
mod reference;
mod seam;

pub use crate::oci::{Descriptor, ImageIndex, ImageManifest, MediaType, PlatformSpec};
pub use auth::{Credential, Credentials};
pub use client::{PushOutcome, RegistryClient, RegistryOptions, Resolved};
pub use helpers::CredentialError;
pub use reference::Reference;
pub use seam::{push_layer_blob, resolve, Registry};

/// Registry failures, classified for the API's error mapping.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image, manifest or blob does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Credentials were missing or refused.
    #[error("{0}")]
    Unauthorized(String),
    /// The registry could not be reached or failed.
    #[error("{0}")]
    Unavailable(String),
    /// The registry answered something kiln cannot accept.
    #[error("{0}")]
    Protocol(String),
    /// A bad reference or argument.
    #[error("{0}")]
    Invalid(String),
    /// A blob to upload is not in the local store (a lazy layer's).
    #[error("{0}")]
    NotLocal(String),
    /// Local storage failed.
    #[error(transparent)]
    Storage(#[from] kiln_snapshotter::Error),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, Error>;
