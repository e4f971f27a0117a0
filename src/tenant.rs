//! Whose build a request is. A service provider builds many customers'
//! functions on one kiln, so what one build leaves for later ones — a
//! `RUN --mount=type=cache` directory, and the layers of steps that used
//! one — is shared within a tenant and never across. The tenant is read
//! from the image being built, at the scope the operator chose
//! (`--tenant-scope`): its repository (the default: every function apart),
//! its namespace (the repository path without its last component, so a
//! customer's functions under `registry/customer/…` share), or its
//! registry (everything pushed to one registry shares).

use crate::registry::Reference;

/// How widely builds share tenant-scoped state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TenantScope {
    /// One registry is one tenant.
    Registry,
    /// `registry/namespace` (the repository without its last component).
    Namespace,
    /// `registry/repository` (the default).
    #[default]
    Repository,
}

/// A tenant scope that is not one of the three.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0:?}: expected registry, namespace or repository")]
pub struct UnknownScope(String);

impl std::str::FromStr for TenantScope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, UnknownScope> {
        match s {
            "registry" => Ok(Self::Registry),
            "namespace" => Ok(Self::Namespace),
            "repository" => Ok(Self::Repository),
            other => Err(UnknownScope(other.to_string())),
        }
    }
}

/// The tenant of a build pushing to `target`.
pub fn tenant_of(target: &Reference, scope: TenantScope) -> String {
    let repository = target.repository.as_str();
    match scope {
        TenantScope::Registry => target.registry.clone(),
        TenantScope::Namespace => {
            let namespace = repository.rsplit_once('/').map_or(repository, |(ns, _)| ns);
            format!("{}/{namespace}", target.registry)
        }
        TenantScope::Repository => format!("{}/{repository}", target.registry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_widen_from_repository_to_registry() {
        let r = Reference::parse("reg.io:5000/acme/fns/hello:1").unwrap();
        assert_eq!(tenant_of(&r, TenantScope::Repository), "reg.io:5000/acme/fns/hello");
        assert_eq!(tenant_of(&r, TenantScope::Namespace), "reg.io:5000/acme/fns");
        assert_eq!(tenant_of(&r, TenantScope::Registry), "reg.io:5000");
        let top = Reference::parse("reg.io/hello").unwrap();
        assert_eq!(tenant_of(&top, TenantScope::Namespace), "reg.io/hello", "no namespace: the repository");
        assert_eq!("namespace".parse::<TenantScope>().unwrap(), TenantScope::Namespace);
        assert!("tenant".parse::<TenantScope>().is_err());
    }
}
