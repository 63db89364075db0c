//! The pod network of each sandbox: which network attaches it, and the
//! record that makes its DEL happen exactly once per ADD.
//!
//! A sandbox on the pod network (not hostNetwork) is attached once its pause
//! process has pinned the namespaces, as containerd's RunPodSandbox does after
//! creating the netns: to the CNI network when the CNI config directory holds
//! a config (what kubelet with containerd or CRI-O does), else to podrun's
//! built-in default network (`podrun0`, `10.88.0.0/16`: what podman gives
//! with no setup; containerd would report NetworkReady=false instead). The
//! choice is made per sandbox, so a conflist installed later (a CNI
//! daemonset) is used by the next sandbox; a sandbox is detached from the
//! network that attached it, whatever the directory holds by then.
//!
//! `<sandbox>/network.json` is written before the ADD (the intent) and
//! rewritten with its result; while it exists the sandbox holds (or may hold)
//! an attachment, and StopPodSandbox, RemovePodSandbox and the clean-up of a
//! failed RunPodSandbox DEL it, then remove the file. A DEL that fails keeps
//! the file, so the next Stop or Remove tries again.
//!
//! The runtime pins the network namespace itself (`<sandbox>/netns`, a bind
//! mount of the pause process's pin), as containerd keeps the netns apart
//! from the sandbox container: DEL runs after the pause process and the
//! monitor ended (the containers stopped first, their connections drained),
//! with the namespace still there for the plugins to remove the interface.

use podrun_net::{
    Attachment, CniConfig, CniNetwork, DefaultNetwork, DefaultNetworkConfig, NetworkError,
    NetworkStatus, PodNetwork,
};
use std::path::{Path, PathBuf};

/// The pod's interface, as kubelet names it (`CNI_IFNAME`).
pub const POD_INTERFACE: &str = "eth0";

/// Where the networks' configs and state are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The CNI client's directories (conf dir, plugin dirs, result cache).
    pub cni: CniConfig,
    /// The built-in default network.
    pub default: DefaultNetworkConfig,
}

impl NetworkConfig {
    /// The usual places, state under `root`: CNI's config in `/etc/cni/net.d`,
    /// plugins in `/opt/cni/bin` then `/usr/lib/cni`, its result cache in
    /// `<root>/cni`; the default network `podrun0` on `10.88.0.0/16`, its
    /// leases in `<root>/network`.
    pub fn new(root: &Path) -> Self {
        NetworkConfig {
            cni: CniConfig::new(root.join("cni")),
            default: DefaultNetworkConfig {
                state_dir: root.join("network"),
                ..DefaultNetworkConfig::default()
            },
        }
    }
}

/// Which network attached a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The CNI network of the config directory.
    Cni,
    /// The built-in default network.
    Default,
}

/// `<sandbox>/network.json`: a sandbox's attachment, before and after its ADD.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkRecord {
    /// The network that attaches it.
    pub kind: Kind,
    /// That network's name (the conflist's `name`, or `podrun`).
    pub name: String,
    /// What the ADD was (and the DEL will be) given.
    pub attachment: Attachment,
    /// What the ADD gave; `None` while it runs, or if it failed.
    pub status: Option<NetworkStatus>,
}

impl NetworkRecord {
    const FILE: &'static str = "network.json";

    /// The record of the sandbox in `dir`, if any.
    pub fn load(dir: &Path) -> std::io::Result<Option<NetworkRecord>> {
        match std::fs::read(dir.join(Self::FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes it durably (a temporary file renamed over the old one).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        podrun_fs::write_atomic(&dir.join(Self::FILE), &bytes)
    }

    /// Removes the record of the sandbox in `dir` (none: nothing to do).
    pub fn remove(dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(dir.join(Self::FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The node's pod networks: the CNI client and the default network.
pub struct Networks {
    cni: CniNetwork,
    default: DefaultNetwork,
}

impl std::fmt::Debug for Networks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Networks")
            .field("cni", self.cni.config())
            .field("default", self.default.config())
            .finish()
    }
}

impl Networks {
    /// Both networks as `config` says; nothing is made or run yet.
    pub fn new(config: &NetworkConfig) -> Result<Networks, NetworkError> {
        let default = DefaultNetwork::new(config.default.clone()).map_err(|e| NetworkError {
            network: podrun_net::bridge::NETWORK_NAME.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Networks {
            cni: CniNetwork::new(config.cni.clone()),
            default,
        })
    }

    /// The network a new sandbox joins: CNI's when its config directory
    /// holds a config (valid or not: a bad one fails the sandbox with the
    /// parser's message, as containerd's would), else the default.
    pub fn choose(&self) -> Kind {
        let configured = podrun_net::cni::conf::conf_files(&self.cni.config().conf_dir)
            .is_ok_and(|files| !files.is_empty());
        if configured {
            Kind::Cni
        } else {
            Kind::Default
        }
    }

    /// The network of that kind.
    pub fn get(&self, kind: Kind) -> &dyn PodNetwork {
        match kind {
            Kind::Cni => &self.cni,
            Kind::Default => &self.default,
        }
    }

    /// The CNI client.
    pub fn cni(&self) -> &CniNetwork {
        &self.cni
    }

    /// The default network.
    pub fn default_network(&self) -> &DefaultNetwork {
        &self.default
    }

    /// ADD with the pod's DNS config passed to CNI (the `dns` capability,
    /// as containerd passes it).
    pub fn add(
        &self,
        kind: Kind,
        attachment: &Attachment,
        dns: Option<&crate::DnsConfig>,
    ) -> Result<NetworkStatus, NetworkError> {
        match kind {
            Kind::Default => self.default.add(attachment),
            Kind::Cni => {
                let extras = podrun_net::cni::Extras {
                    dns: dns.map(|d| podrun_net::cni::DnsCapability {
                        servers: d.servers.clone(),
                        searches: d.searches.clone(),
                        options: d.options.clone(),
                    }),
                };
                self.cni
                    .add_with(attachment, &extras)
                    .map(|(status, _)| status)
                    .map_err(|e| NetworkError {
                        network: self.cni.name().to_owned(),
                        message: e.to_string(),
                    })
            }
        }
    }

    /// Releases what the networks hold for sandboxes that no longer exist
    /// (after a reboot emptied the run root, or a removal that lost its
    /// record): `live` are the sandboxes that do, with their attachments.
    /// CNI: GC of the network (DEL of each cached attachment not live, and
    /// the plugins' own GC from CNI 1.1); the default network: DEL of each
    /// lease's sandbox not live. Returns what failed, as messages.
    pub fn collect_garbage(&self, live: &[String]) -> Vec<String> {
        let mut errors = Vec::new();
        if self.choose() == Kind::Cni || !self.cni.cached_attachments().is_empty() {
            let valid: Vec<(String, String)> = live
                .iter()
                .map(|id| (id.clone(), POD_INTERFACE.to_owned()))
                .collect();
            if let Err(e) = self.cni.gc(&valid) {
                errors.push(format!("{}: gc: {e}", self.cni.name()));
            }
        }
        let mut gone: Vec<String> = self
            .default
            .leases()
            .into_iter()
            .map(|(_, id)| id)
            .filter(|id| !live.contains(id))
            .collect();
        gone.sort();
        gone.dedup();
        for sandbox_id in gone {
            let attachment = Attachment {
                sandbox_id,
                netns: PathBuf::new(),
                ifname: POD_INTERFACE.to_owned(),
                pod_name: String::new(),
                pod_namespace: String::new(),
                pod_uid: String::new(),
                port_mappings: Vec::new(),
                annotations: Default::default(),
                cgroup_parent: String::new(),
            };
            if let Err(e) = self.default.del(&attachment) {
                errors.push(e.to_string());
            }
        }
        errors
    }
}

/// The attachment of a sandbox: its ID, the runtime's pin of its network
/// namespace, who it is for, and its published ports (those with a hostPort).
pub fn attachment_for(
    id: &str,
    netns: &Path,
    config: &crate::PodSandboxConfig,
) -> Result<Attachment, String> {
    let mut port_mappings = Vec::new();
    for p in &config.port_mappings {
        if p.host_port <= 0 {
            continue;
        }
        let port = |n: i32, what: &str| {
            u16::try_from(n).map_err(|_| format!("port mapping {what} {n}: not a port (1-65535)"))
        };
        port_mappings.push(podrun_net::PortMapping {
            host_port: port(p.host_port, "hostPort")?,
            container_port: port(p.container_port, "containerPort")?,
            protocol: match p.protocol {
                crate::Protocol::Tcp => podrun_net::Protocol::Tcp,
                crate::Protocol::Udp => podrun_net::Protocol::Udp,
                crate::Protocol::Sctp => podrun_net::Protocol::Sctp,
            },
            host_ip: p.host_ip.clone(),
        });
    }
    Ok(Attachment {
        sandbox_id: id.to_owned(),
        netns: netns.to_path_buf(),
        ifname: POD_INTERFACE.to_owned(),
        pod_name: config.metadata.name.clone(),
        pod_namespace: config.metadata.namespace.clone(),
        pod_uid: config.metadata.uid.clone(),
        port_mappings,
        annotations: config.annotations.clone(),
        cgroup_parent: config.linux.cgroup_parent.clone(),
    })
}

/// Pins the namespace at `from` (the pause process's pin) at `to`, a new
/// empty file: the runtime's own reference, which outlives the monitor.
pub fn pin(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::File::create(to)?;
    rustix::mount::mount_bind(from, to).map_err(std::io::Error::from)
}

/// Whether `path` is a pinned namespace (a file of the nsfs filesystem).
pub fn is_pinned(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    // `f_type`'s type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as i64 == NSFS_MAGIC)
}

/// Unpins what [`pin`] pinned at `path` and removes the file (absent: done).
pub fn unpin(path: &Path) -> std::io::Result<()> {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
