//! What can go wrong setting a pod's volumes up or taking them down.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::subpath::{ResolveError, SubPathRefused};
use crate::TmpfsOptionsError;

/// What a mount belongs to, as an error names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// One of the pod's volumes, by name.
    Volume(String),
    /// The pod's `/dev/shm`.
    Shm,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Volume(name) => write!(f, "volume {name}"),
            Owner::Shm => f.write_str("/dev/shm"),
        }
    }
}

/// Why a volume (or the pod's `/dev/shm`) could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A volume name that is not one directory name (validation lets none through).
    #[error("volume {0:?}: the name is not a directory name")]
    BadName(String),
    /// The volume's directory could not be made.
    #[error("{owner}: create {}: {source}", path.display())]
    CreateDir {
        /// Whose directory.
        owner: Owner,
        /// Which directory.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// A hostPath that must exist does not.
    #[error("volume {volume}: hostPath {} does not exist", path.display())]
    HostPathMissing {
        /// The volume's name.
        volume: String,
        /// The path on the host.
        path: PathBuf,
    },
    /// A hostPath that fails its `type`'s check (kubelet's FailedMount).
    #[error("volume {volume}: {source}")]
    HostPathType {
        /// The volume's name.
        volume: String,
        /// kubelet's words.
        source: crate::host_path::HostPathTypeError,
    },
    /// A subPath that is absolute or climbs out of its volume (validation lets none
    /// through a subPath; a subPathExpr's expansion may).
    #[error("volume {volume}: {source}")]
    SubPathRefused {
        /// The volume's name.
        volume: String,
        /// What kubelet says of it.
        source: SubPathRefused,
    },
    /// A subPath that cannot be resolved safely inside its volume: through a link
    /// to outside it (CVE-2017-1002101), or changed while it was opened.
    #[error("volume {volume}: subPath {sub_path:?}: {source}")]
    SubPath {
        /// The volume's name.
        volume: String,
        /// The volumeMount's subPath (expanded).
        sub_path: String,
        /// What was wrong.
        source: ResolveError,
    },
    /// The subPath could not be bind-mounted where the runtime takes it from.
    #[error("volume {volume}: bind subPath {sub_path:?} on {}: {source}", target.display())]
    SubPathBind {
        /// The volume's name.
        volume: String,
        /// The volumeMount's subPath (expanded).
        sub_path: String,
        /// The bind mount's target under the pod's directory.
        target: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// The tmpfs's size or mode cannot be said to the kernel.
    #[error("{owner}: {source}")]
    TmpfsOptions {
        /// Whose tmpfs.
        owner: Owner,
        /// What is wrong with the options.
        source: TmpfsOptionsError,
    },
    /// The mount table could not be read, so whether the tmpfs is there is unknown.
    #[error("{owner}: read the mount table: {source}")]
    MountTable {
        /// Whose tmpfs.
        owner: Owner,
        /// What reading it said.
        source: io::Error,
    },
    /// The tmpfs could not be mounted.
    #[error("{owner}: mount tmpfs on {}: {source}", target.display())]
    Mount {
        /// Whose tmpfs.
        owner: Owner,
        /// Where it was to be mounted.
        target: PathBuf,
        /// What mount(2) said.
        source: io::Error,
    },
}

impl VolumeError {
    /// Whether the volumeMount's subPath is at fault (kubelet's makeMounts fails
    /// and the container gets CreateContainerConfigError).
    pub fn is_sub_path(&self) -> bool {
        matches!(
            self,
            VolumeError::SubPathRefused { .. }
                | VolumeError::SubPath { .. }
                | VolumeError::SubPathBind { .. }
        )
    }
}

impl VolumeError {
    /// The volume and kubelet's words when this is a FailedMount of kubelet's
    /// volume manager (MountVolume.SetUp failed), which the container waits out.
    pub fn failed_mount(&self) -> Option<(&str, String)> {
        match self {
            VolumeError::HostPathType { volume, source } => Some((volume, source.to_string())),
            _ => None,
        }
    }
}

/// One mount that would not come down.
#[derive(Debug, thiserror::Error)]
#[error("unmount {}: {source}", target.display())]
pub struct UnmountError {
    /// The mount point.
    pub target: PathBuf,
    /// What umount2(2) said.
    pub source: io::Error,
}

/// Why a pod's mounts did not all come down.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    /// The mount table could not be read: nothing was unmounted.
    #[error("read the mount table: {0}")]
    MountTable(io::Error),
    /// These mounts stayed; every other one came down.
    #[error("{}", join(.0))]
    Unmount(Vec<UnmountError>),
}

fn join(errors: &[UnmountError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
