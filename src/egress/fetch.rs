//! The step egress policy for what kiln fetches on a Dockerfile's behalf
//! (`ADD <url>`): the URL comes from the tenant and the body goes into the
//! image, so a URL on the node, a private range or the metadata address is
//! refused as a step's connection would be. Three checks, because each
//! alone has a gap: the URL's host and port before the request (resolved
//! names: every address), a resolver that hands the client only addresses
//! the policy allows (a name that resolves differently the second time),
//! and a redirect policy that checks every hop's literal address.

use super::policy::{EgressPolicy, Verdict};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Most redirects followed.
const MAX_REDIRECTS: usize = 10;

/// Why a URL may not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum UrlRefused {
    /// No host to connect to.
    #[error("the URL has no host")]
    NoHost,
    /// The host name does not resolve.
    #[error("resolve {host}: {source}")]
    Resolve {
        /// The name.
        host: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An address the host resolves to is refused.
    #[error("{addr} is refused by the egress policy: {why}")]
    Denied {
        /// The address.
        addr: SocketAddr,
        /// The policy's reason.
        why: String,
    },
}

/// Why `url` may not be fetched, if it may not.
pub async fn check_url(policy: &EgressPolicy, url: &reqwest::Url) -> Result<(), UrlRefused> {
    let port = url.port_or_known_default().unwrap_or(0);
    let Some(host) = url.host_str() else { return Err(UrlRefused::NoHost) };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| UrlRefused::Resolve { host: host.to_string(), source })?
            .collect(),
    };
    for addr in addrs {
        if let Verdict::Denied(why) = policy.verdict(addr) {
            return Err(UrlRefused::Denied { addr, why: why.to_string() });
        }
    }
    Ok(())
}

/// A resolver that drops the addresses the policy refuses on every port.
pub struct PolicyResolver(pub Arc<EgressPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.into_iter().filter(|a| policy.allows_address(a.ip())).collect();
            if allowed.is_empty() {
                return Err(format!("{host}: every address is refused by the egress policy").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Follows redirects (at most [`MAX_REDIRECTS`]) whose literal addresses
/// the policy allows; names are checked by [`PolicyResolver`].
pub fn redirect_policy(policy: Arc<EgressPolicy>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        let url = attempt.url();
        let port = url.port_or_known_default().unwrap_or(0);
        let literal = url.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>());
        match literal {
            Some(Ok(ip)) => match policy.verdict(SocketAddr::new(ip, port)) {
                Verdict::Allowed => attempt.follow(),
                Verdict::Denied(why) => attempt.error(format!("redirect to {ip}:{port} refused: {why}")),
            },
            _ => attempt.follow(),
        }
    })
}
