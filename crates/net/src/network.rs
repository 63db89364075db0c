//! What the runtime asks of a pod network, whichever provides it: the CNI
//! client (`cni`, real plugins from a conflist, as containerd's go-cni runs
//! them) or podrun's built-in default network (`bridge`: the same result as
//! `bridge` + `host-local` + `portmap` + `loopback`, made in-process).
//!
//! The runtime calls [`PodNetwork::add`] once per sandbox, after its pause
//! process has pinned the network namespace, and [`PodNetwork::del`] exactly
//! once per successful `add` (on StopPodSandbox, on a failed RunPodSandbox, on
//! recovery of a sandbox whose monitor died). `del` must be idempotent: after a
//! crash it may run again for an attachment it already removed, or for one whose
//! namespace is gone (CNI's rule: DEL of something absent is success).
//!
//! The shapes follow the CRI (`PortMapping`, `PodSandboxNetworkStatus`) and
//! CNI's runtime config (`CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, the
//! `K8S_POD_*` args, the `portMappings` capability), so that the CRI server can
//! hand kubelet's values through unchanged.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// A port protocol, as the CRI names them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The lower-case name, as CNI's `portMappings` capability writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A `hostPort` mapping (CRI `PortMapping`; CNI's `portMappings` capability).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// The node's port.
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// The protocol.
    pub protocol: Protocol,
    /// The node address to bind (`hostIP`); empty for every address.
    pub host_ip: String,
}

/// One sandbox's attachment to a network: what CNI calls the runtime config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    /// The sandbox's ID (`CNI_CONTAINERID`, `K8S_POD_INFRA_CONTAINER_ID`).
    pub sandbox_id: String,
    /// The pinned network namespace (`CNI_NETNS`).
    pub netns: PathBuf,
    /// The interface inside the namespace (`CNI_IFNAME`, `eth0`).
    pub ifname: String,
    /// `K8S_POD_NAME`.
    pub pod_name: String,
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: String,
    /// `K8S_POD_UID`.
    pub pod_uid: String,
    /// `hostPort` mappings.
    pub port_mappings: Vec<PortMapping>,
    /// The sandbox's annotations (`io.kubernetes.cri.pod-annotations`).
    pub annotations: BTreeMap<String, String>,
    /// The pod's cgroup parent (CNI's `cgroupPath` capability), if known.
    pub cgroup_parent: String,
}

/// What an `add` gave the pod (CRI `PodSandboxNetworkStatus`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkStatus {
    /// The pod's addresses, the primary first (kubelet's order: the first
    /// address of the default interface; in dual-stack, IPv4 before IPv6
    /// unless the config puts IPv6 first).
    pub ips: Vec<IpAddr>,
    /// The interface inside the namespace that holds them.
    pub interface: String,
}

/// Why a network operation failed. The message names the network (and, for CNI,
/// the plugin) and the cause, as kubelet's `FailedCreatePodSandBox` event shows it.
#[derive(Debug, thiserror::Error)]
#[error("{network}: {message}")]
pub struct NetworkError {
    /// The network's name (the conflist's `name`, or `podrun` for the default).
    pub network: String,
    /// What failed and why: `plugin type="bridge" failed (add): failed to …`.
    pub message: String,
}

/// A pod network: the CNI client or the built-in default.
pub trait PodNetwork: Send + Sync {
    /// The network's name (CNI `name`).
    fn name(&self) -> &str;
    /// Attaches the sandbox's namespace: interfaces, addresses, routes, port
    /// mappings. On failure nothing it made stays behind.
    fn add(&self, attachment: &Attachment) -> Result<NetworkStatus, NetworkError>;
    /// Detaches it and releases what `add` took (leases, rules, interfaces).
    /// Idempotent; success when there is nothing left to release.
    fn del(&self, attachment: &Attachment) -> Result<(), NetworkError>;
    /// [`del`](Self::del) for a caller that drops its pin of the namespace
    /// right after, when nothing else holds it (the sandbox's processes have
    /// ended): what the kernel removes with the namespace may be left to it.
    /// The default is `del`.
    fn del_then_drop_netns(&self, attachment: &Attachment) -> Result<(), NetworkError> {
        self.del(attachment)
    }
    /// Whether the network is ready to serve pods (CRI `NetworkReady`), and why not.
    fn ready(&self) -> Result<(), NetworkError>;
}
