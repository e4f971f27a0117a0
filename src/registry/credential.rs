//! One registry's credentials (a leaf: the auth and helper modules share it).

/// One registry's credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`).
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}
