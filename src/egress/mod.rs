//! Networks of RUN steps: each step with the default network gets a
//! network namespace of its own whose only ways out are kiln's TCP relay
//! and DNS forwarder, under an [`policy::EgressPolicy`] (the internet:
//! yes; the node, its loopback, private and link-local ranges: refused at
//! once). Namespaces are prepared ahead of the steps in a small pool, so a
//! step does not wait for one. See `docs/security.md`.

pub mod fetch;
pub mod policy;
mod relay;

use kiln_runtime::netns::Prepared;
use policy::EgressPolicy;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// Something a step's network did, for the build log and audit line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EgressEvent {
    /// A connection went out.
    Connected {
        /// `tcp ADDR:PORT`.
        destination: String,
    },
    /// A connection or packet was refused.
    Blocked {
        /// `tcp ADDR:PORT`, `udp ADDR:PORT` or `icmp ADDR`.
        destination: String,
        /// Why.
        why: String,
    },
    /// An allowed connection could not be opened.
    Failed {
        /// `tcp ADDR:PORT`.
        destination: String,
        /// The error.
        why: String,
    },
    /// The step looked a name up.
    Resolved {
        /// The name.
        name: String,
    },
}

impl EgressEvent {
    /// The build log's line for it.
    pub fn log_line(&self) -> String {
        match self {
            EgressEvent::Connected { destination } => format!("[egress] connected to {destination}"),
            EgressEvent::Blocked { destination, why } => format!("[egress] blocked {destination}: {why}"),
            EgressEvent::Failed { destination, why } => format!("[egress] could not connect to {destination}: {why}"),
            EgressEvent::Resolved { name } => format!("[egress] resolved {name}"),
        }
    }
}

/// Where a step's network events go.
pub type Reporter = Arc<dyn Fn(EgressEvent) + Send + Sync>;

/// Settings of step networks.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// What steps may reach.
    pub policy: Arc<EgressPolicy>,
    /// Resolvers the DNS forwarder asks (from the host's resolv.conf or
    /// `--step-dns`).
    pub resolvers: Arc<Vec<SocketAddr>>,
    /// The `nft` program.
    pub nft: String,
    /// Namespaces kept prepared.
    pub spare: usize,
}

/// A pool of prepared step namespaces, shared by all builds.
pub struct StepNetworks {
    cfg: NetworkConfig,
    ready: Mutex<Vec<Prepared>>,
    filling: AtomicBool,
}

impl std::fmt::Debug for StepNetworks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepNetworks").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl StepNetworks {
    /// An empty pool; [`StepNetworks::warm`] fills it.
    pub fn new(cfg: NetworkConfig) -> Arc<StepNetworks> {
        Arc::new(StepNetworks { cfg, ready: Mutex::new(Vec::new()), filling: AtomicBool::new(false) })
    }

    /// The policy steps (and ADD URLs) follow.
    pub fn policy(&self) -> &Arc<EgressPolicy> {
        &self.cfg.policy
    }

    /// Prepares one namespace now (blocking: a thread, a few syscalls and
    /// one `nft` run).
    pub fn prepare(&self) -> Result<Prepared, NetworkError> {
        let policy = self.cfg.policy.clone();
        Ok(Prepared::create(&self.cfg.nft, move |ports| policy.ruleset(ports))?)
    }

    /// Fills the pool in the background up to its spare count.
    pub fn warm(self: &Arc<Self>) {
        if self.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            while pool.ready.lock().unwrap_or_else(|p| p.into_inner()).len() < pool.cfg.spare {
                match pool.prepare() {
                    Ok(p) => pool.ready.lock().unwrap_or_else(|p| p.into_inner()).push(p),
                    Err(e) => {
                        tracing::warn!("preparing a step network: {e}");
                        break;
                    }
                }
            }
            pool.filling.store(false, Ordering::Release);
        });
    }

    /// A namespace for one step, served until the returned handle drops.
    pub async fn take(self: &Arc<Self>, report: Reporter) -> Result<StepNetwork, NetworkError> {
        let pooled = self.ready.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let prepared = match pooled {
            Some(p) => p,
            None => {
                let pool = self.clone();
                tokio::task::spawn_blocking(move || pool.prepare()).await??
            }
        };
        self.warm();
        StepNetwork::serve(prepared, &self.cfg, report)
    }
}

/// Why a step's network could not be had.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// Creating the namespaces or loading the ruleset failed.
    #[error(transparent)]
    Create(#[from] kiln_runtime::Error),
    /// The relay or resolver sockets could not be served.
    #[error("serve the step network: {0}")]
    Serve(#[source] std::io::Error),
    /// The preparing thread panicked.
    #[error("prepare the step network: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One step's namespace and the tasks serving it (aborted on drop).
pub struct StepNetwork {
    netns: OwnedFd,
    userns: OwnedFd,
    tasks: Vec<JoinHandle<()>>,
    nflog: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
}

impl StepNetwork {
    fn serve(p: Prepared, cfg: &NetworkConfig, report: Reporter) -> Result<StepNetwork, NetworkError> {
        let ctx = Arc::new(relay::Ctx { policy: cfg.policy.clone(), resolvers: cfg.resolvers.clone(), report });
        let tcp = |l: std::net::TcpListener| {
            l.set_nonblocking(true).and_then(|_| tokio::net::TcpListener::from_std(l)).map_err(NetworkError::Serve)
        };
        let mut tasks = vec![tokio::spawn(relay::serve_tcp(tcp(p.relay_v4)?, ctx.clone()))];
        if let Some(l6) = p.relay_v6 {
            tasks.push(tokio::spawn(relay::serve_tcp(tcp(l6)?, ctx.clone())));
        }
        p.dns.set_nonblocking(true).map_err(NetworkError::Serve)?;
        let dns = tokio::net::UdpSocket::from_std(p.dns).map_err(NetworkError::Serve)?;
        tasks.push(tokio::spawn(relay::serve_dns(dns, ctx.clone())));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let nflog = tokio::spawn(relay::serve_nflog(p.nflog, ctx, stopped));
        Ok(StepNetwork { netns: p.netns, userns: p.userns, tasks, nflog: Some((stop, nflog)) })
    }

    /// Ends the step's network after reporting every refusal still queued.
    pub async fn close(mut self) {
        if let Some((stop, task)) = self.nflog.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), task).await;
        }
    }

    /// The network namespace's descriptor, for the helper to inherit and join.
    pub fn netns_fd(&self) -> i32 {
        self.netns.as_raw_fd()
    }

    /// The descriptor of the step's user namespace, which owns the network
    /// namespace (the helper joins it just before the container starts).
    pub fn userns_fd(&self) -> i32 {
        self.userns.as_raw_fd()
    }
}

impl Drop for StepNetwork {
    fn drop(&mut self) {
        for t in self.tasks.iter().chain(self.nflog.as_ref().map(|(_, t)| t)) {
            t.abort();
        }
    }
}

/// Nameservers of the host's `/etc/resolv.conf` (port 53).
pub fn host_resolvers() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().split('%').next()?.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}
