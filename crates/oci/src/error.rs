//! Errors of spec generation. Each names the container; the cause says what and why.

use std::path::PathBuf;

/// Spec generation failed for one container: `container web: no command specified`.
/// (What kubelet refuses — runAsNonRoot, sysctls, quantities — the pod manager refuses
/// before: `podrun_agent::container_config`.)
#[derive(Debug, thiserror::Error)]
#[error("container {container}: {kind}")]
pub struct Error {
    /// The container's name, as in the pod spec.
    pub container: String,
    /// What went wrong.
    pub kind: ErrorKind,
}

/// Why a spec could not be generated. The messages of the kubelet and containerd rules
/// keep those projects' wording, so a user who searches for them finds the same answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// Neither the container nor its image names a program to run.
    #[error("no command specified")]
    NoCommand,
    /// A user string that is neither `user` nor `user:group`, or an id out of range.
    #[error("invalid USER value {user:?}: {reason}")]
    InvalidUser {
        /// The user string as given.
        user: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A user name that the image's /etc/passwd does not list.
    #[error("unable to find user {user} in image {image}: {reason}")]
    UserNotFound {
        /// The user name.
        user: String,
        /// The image reference.
        image: String,
        /// Why the lookup failed (no entry, no passwd file).
        reason: String,
    },
    /// A group name that the image's /etc/group does not list.
    #[error("unable to find group {group} in image {image}: {reason}")]
    GroupNotFound {
        /// The group name.
        group: String,
        /// The image reference.
        image: String,
        /// Why the lookup failed (no entry, no group file).
        reason: String,
    },
    /// A capability name that is not a Linux capability.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    /// shareProcessNamespace without the path of the pod's pid namespace.
    #[error("shareProcessNamespace is set but no pid namespace path was given")]
    MissingPidNamespace,
    /// The seccomp profile could not be used.
    #[error("seccomp profile: {0}")]
    Seccomp(String),
    /// A stop signal that is not a known signal.
    #[error("unknown stop signal {0:?}")]
    UnknownSignal(String),
    /// A mount whose destination is not an absolute path.
    #[error("mount destination {0:?} is not an absolute path")]
    RelativeMountDestination(String),
    /// The OCI types refused a value (a builder validation).
    #[error("building the runtime spec: {0}")]
    Oci(String),
}

/// Reading the user database files of an image's root filesystem failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The root filesystem directory could not be opened.
    #[error("open root filesystem {path}: {source}")]
    OpenRoot {
        /// The root filesystem path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file inside the root filesystem could not be read.
    #[error("read {file} in root filesystem {root}: {source}")]
    Read {
        /// The file, relative to the root (`etc/passwd`).
        file: &'static str,
        /// The root filesystem path.
        root: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than any sane user database.
    #[error("{file} in root filesystem {root} is larger than {limit} bytes")]
    TooLarge {
        /// The file, relative to the root.
        file: &'static str,
        /// The root filesystem path.
        root: PathBuf,
        /// The size limit.
        limit: u64,
    },
}
