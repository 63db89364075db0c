//! A pod's network identity and attachment:
//!
//! - [`cni`]: the CNI client, a [`PodNetwork`] made by real plugins from the
//!   node's config list, run as libcni and containerd's go-cni run them;
//! - [`dns`]: `/etc/resolv.conf` by the pod's `dnsPolicy` and `dnsConfig`, by
//!   kubelet's rules (pkg/kubelet/network/dns);
//! - [`hosts`]: the contents of `/etc/hosts` and `/etc/hostname`;
//! - [`netns`]: running code on a thread that joined a pod's pinned network
//!   namespace (what probes do), behind a [`netns::Syscall`] seam so the logic is
//!   tested without root;
//! - [`bridge`]: podrun's built-in default pod network (a bridge, veth pairs,
//!   host-local leases, portmap's rules), made in-process;
//! - [`network`]: what the runtime asks of a pod network ([`PodNetwork`]: add,
//!   del, ready), whichever network provides it.
//!
//! DESIGN.md gives `/etc/hosts` to the pod manager, as kubelet writes it (CRI runtimes
//! only write `/etc/hostname` and `/etc/resolv.conf`). The pod manager keeps that
//! role: it decides whether a pod gets the file, with which IP and aliases, and whether
//! a volumeMount covers it. Only the formatter lives here: it is pure text about the
//! pod's network names, the sibling of the resolv.conf and hostname contents, and
//! keeping the three together keeps kubelet's file formats in one tested place
//! instead of spreading them over the binary.
//!
//! Nothing here needs `unsafe`: system calls go through rustix.

#![forbid(unsafe_code)]

pub mod bridge;
pub mod cni;
pub mod dns;
pub mod hosts;
pub mod netns;
pub mod network;

pub use bridge::{DefaultNetwork, DefaultNetworkConfig};
pub use cni::{CniConfig, CniNetwork};
pub use dns::{resolv_conf, DnsConfig, DnsOption, ResolvConfError};
pub use hosts::{host_network_hosts_file, hostname_file, hosts_file};
pub use netns::{in_network_namespace, NetnsError};
pub use network::{Attachment, NetworkError, NetworkStatus, PodNetwork, PortMapping, Protocol};
