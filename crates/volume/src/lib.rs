//! A pod's volumes on the host, kubelet's volume manager for the types podrun has
//! so far: emptyDir on the node's disk, as a sized tmpfs (`medium: Memory`) or a
//! hugetlbfs (`medium: HugePages`),
//! hostPath (its `type` checked as kubelet's checkType, [`host_path`]), a volumeMount's
//! subPath (resolved safely and bind-mounted by descriptor, [`subpath`]), the pod's
//! fsGroup ([`ownership`]), and the pod's `/dev/shm`. Each answers with
//! the host path the runtime bind-mounts into the containers; [`PodVolumes::unmount_all`]
//! takes down every mount under the pod's directory when the pod goes.
//!
//! Plain inputs, no Pod types: the pod manager reads the Pod and says what it wants
//! (a volume's name, medium and size, a hostPath and its type), so this crate stays
//! below `spec` and can serve the CRI path too.
//!
//! Every system call goes through [`Syscall`] (youki's pattern): [`LinuxSyscall`] makes
//! them with rustix, [`RecordingSyscall`] records them against a mount table of its
//! own, so what is mounted where, with which options, how often and in which order
//! it is taken down is unit-tested without root. tests/ mounts for real (as root).

#![forbid(unsafe_code)]

pub mod atomic_writer;
mod error;
pub mod host_path;
pub mod ownership;
mod pod;
pub mod subpath;
mod syscall;
mod tmpfs;
mod usage;

pub use error::{Owner, TeardownError, UnmountError, VolumeError};
pub use pod::{HostPathType, Medium, PodVolumes, UnknownHostPathType};
pub use syscall::{Call, LinuxSyscall, RecordingSyscall, Syscall};
pub use tmpfs::{memory_empty_dir_size, tmpfs_options, TmpfsOptionsError, SHM_SIZE};
pub use usage::disk_usage;
