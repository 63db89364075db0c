//! Container root filesystems: an overlay mount of the image's snapshots
//! (top layer first) plus the container's own writable `upper` directory, at
//! `containers/<id>/merged`. `containers/<id>/image.json` records which image
//! and snapshots the container uses, so they are not removed under it.

use crate::digest::Digest;
use crate::snapshot::{remove_tree, SnapshotStore};
use crate::store::ImageRecord;
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// What a container's filesystem is built from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerUse {
    /// The image's name when the filesystem was prepared.
    pub image: String,
    /// The image ID.
    pub image_id: Digest,
    /// The snapshots under it, bottom first.
    pub chain_ids: Vec<Digest>,
}

/// Why a root filesystem could not be prepared or removed.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A container ID that could not be a directory name.
    #[error("container {0:?}: invalid ID: use 1-128 letters, digits, '_', '-' or '.' (not starting with '.')")]
    InvalidId(String),
    /// A snapshot the image needs is missing.
    #[error(
        "container {id}: snapshot {chain_id} of image {image} is missing; pull the image again"
    )]
    MissingSnapshot {
        /// The container.
        id: String,
        /// The image.
        image: String,
        /// The missing snapshot.
        chain_id: Digest,
    },
    /// An image with no layers cannot be a root filesystem.
    #[error("container {id}: image {image} has no layers")]
    NoLayers {
        /// The container.
        id: String,
        /// The image.
        image: String,
    },
    /// The container already has a filesystem.
    #[error("container {0}: root filesystem already exists")]
    Exists(String),
    /// A file or mount operation failed.
    #[error("container {id}: {step}: {source}")]
    Io {
        /// The container.
        id: String,
        /// What was being done.
        step: String,
        /// The cause.
        source: io::Error,
    },
}

/// Check a container ID before it becomes part of a path.
pub fn check_id(id: &str) -> Result<(), RootfsError> {
    podrun_fs::check_id(id).map_err(|e| RootfsError::InvalidId(e.0))
}

/// The containers directory of one store root.
#[derive(Debug, Clone)]
pub struct Rootfs {
    dir: PathBuf,
}

impl Rootfs {
    /// Open (creating) `root/containers`.
    pub fn open(root: &Path) -> io::Result<Self> {
        let dir = root.join("containers");
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The writable layer of container `id` (`containers/<id>/upper`): what
    /// it wrote over its image.
    pub fn upper_dir(&self, id: &str) -> Result<PathBuf, RootfsError> {
        check_id(id)?;
        Ok(self.container_dir(id).join("upper"))
    }

    /// Build and mount the root filesystem of container `id` from `image`;
    /// returns the mounted path. On failure nothing of it is left.
    pub fn prepare(
        &self,
        snapshots: &SnapshotStore,
        image: &ImageRecord,
        id: &str,
    ) -> Result<PathBuf, RootfsError> {
        check_id(id)?;
        let io_err = |step: &str, source| RootfsError::Io {
            id: id.to_string(),
            step: step.to_string(),
            source,
        };
        if image.layers.is_empty() {
            return Err(RootfsError::NoLayers {
                id: id.into(),
                image: image.name.clone(),
            });
        }
        let mut lowers = Vec::with_capacity(image.layers.len());
        for chain_id in image.chain_ids().iter().rev() {
            if !snapshots.exists(chain_id) {
                return Err(RootfsError::MissingSnapshot {
                    id: id.into(),
                    image: image.name.clone(),
                    chain_id: chain_id.clone(),
                });
            }
            lowers.push(snapshots.path(chain_id));
        }
        let dir = self.container_dir(id);
        match fs::create_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RootfsError::Exists(id.into()))
            }
            r => r.map_err(|e| io_err("create directory", e))?,
        }
        let result = self.mount(&dir, &lowers, image);
        if result.is_err() {
            let _ = remove_tree(&dir);
        }
        result.map_err(|(step, e)| io_err(step, e))
    }

    fn mount(
        &self,
        dir: &Path,
        lowers: &[PathBuf],
        image: &ImageRecord,
    ) -> Result<PathBuf, (&'static str, io::Error)> {
        let record = ContainerUse {
            image: image.name.clone(),
            image_id: image.id.clone(),
            chain_ids: image.chain_ids(),
        };
        let json = serde_json::to_vec(&record).map_err(|e| ("record image", e.into()))?;
        fs::write(dir.join("image.json"), json).map_err(|e| ("record image", e))?;
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &work, &merged] {
            fs::create_dir(d).map_err(|e| ("create directory", e))?;
        }
        let lowerdir = lowers
            .iter()
            .map(|p| option_path(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ("overlay options", e))?
            .join(":");
        let data = format!(
            "lowerdir={lowerdir},upperdir={},workdir={}",
            option_path(&upper).map_err(|e| ("overlay options", e))?,
            option_path(&work).map_err(|e| ("overlay options", e))?
        );
        // The classic mount(2) call takes at most one page of options.
        if data.len() >= 4096 {
            return Err((
                "mount overlay",
                io::Error::other(format!(
                    "{} layers make {} bytes of overlay options, over the kernel's 4096; use a shorter --root",
                    lowers.len(),
                    data.len()
                )),
            ));
        }
        let data = CString::new(data).map_err(|e| ("overlay options", e.into()))?;
        rustix::mount::mount(
            "overlay",
            &merged,
            "overlay",
            rustix::mount::MountFlags::empty(),
            data.as_c_str(),
        )
        .map_err(|e| ("mount overlay", e.into()))?;
        Ok(merged)
    }

    /// Mount `image` read-only for container `id` as its image volume number
    /// `index` (a Kubernetes `image` volume: kubelet sends the image in the CRI
    /// mount and the runtime mounts it), at
    /// `containers/<id>/image-volumes/<index>`; returns that path. Its
    /// snapshots are shared with every other user of the image: one layer is
    /// bound, several are a read-only overlay (no upper directory). Either way
    /// the mount is `ro,nosuid,nodev,noexec`, as Kubernetes documents image
    /// volumes. `image-volumes/<index>.json` records what it uses, so the image
    /// and its snapshots are not removed under it. The container's filesystem
    /// must have been prepared; [`Rootfs::remove`] takes the mount down.
    pub fn mount_image_volume(
        &self,
        snapshots: &SnapshotStore,
        image: &ImageRecord,
        id: &str,
        index: usize,
    ) -> Result<PathBuf, RootfsError> {
        check_id(id)?;
        let step = |step: &str| {
            let step = format!("image volume {index} ({}): {step}", image.name);
            move |source| RootfsError::Io {
                id: id.to_string(),
                step,
                source,
            }
        };
        let mut lowers = Vec::with_capacity(image.layers.len());
        for chain_id in image.chain_ids().iter().rev() {
            if !snapshots.exists(chain_id) {
                return Err(RootfsError::MissingSnapshot {
                    id: id.into(),
                    image: image.name.clone(),
                    chain_id: chain_id.clone(),
                });
            }
            lowers.push(snapshots.path(chain_id));
        }
        let dir = self.container_dir(id).join("image-volumes");
        fs::create_dir_all(&dir).map_err(step("create directory"))?;
        let target = dir.join(index.to_string());
        if is_mount_point(&target) {
            return Ok(target);
        }
        let record = ContainerUse {
            image: image.name.clone(),
            image_id: image.id.clone(),
            chain_ids: image.chain_ids(),
        };
        let json = serde_json::to_vec(&record).map_err(|e| step("record image")(e.into()))?;
        fs::write(dir.join(format!("{index}.json")), json).map_err(step("record image"))?;
        match fs::create_dir(&target) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(step("create directory")(e))
            }
            _ => {}
        }
        use rustix::mount::{MountFlags, MountPropagationFlags};
        let flags =
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        match lowers.as_slice() {
            [] => {
                return Err(RootfsError::NoLayers {
                    id: id.into(),
                    image: image.name.clone(),
                })
            }
            // overlayfs wants two lower directories when it has no upper one.
            [only] => {
                rustix::mount::mount_bind(only, &target).map_err(|e| step("bind")(e.into()))?;
                // A bind takes its flags from a remount (mount(2)).
                let remounted =
                    rustix::mount::mount_remount(&target, flags | MountFlags::BIND, c"").and_then(
                        |()| rustix::mount::mount_change(&target, MountPropagationFlags::PRIVATE),
                    );
                if let Err(e) = remounted {
                    let _ = rustix::mount::unmount(&target, rustix::mount::UnmountFlags::DETACH);
                    return Err(step("remount read-only")(e.into()));
                }
            }
            several => {
                let lowerdir = several
                    .iter()
                    .map(|p| option_path(p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(step("overlay options"))?
                    .join(":");
                let data = CString::new(format!("lowerdir={lowerdir}"))
                    .map_err(|e| step("overlay options")(e.into()))?;
                rustix::mount::mount("overlay", &target, "overlay", flags, data.as_c_str())
                    .map_err(|e| step("mount overlay")(e.into()))?;
            }
        }
        Ok(target)
    }

    /// Unmount and delete container `id`'s filesystem (and its image volumes);
    /// a missing one is not an error.
    pub fn remove(&self, id: &str) -> Result<(), RootfsError> {
        check_id(id)?;
        let dir = self.container_dir(id);
        let unmount = |target: &Path| {
            rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()).map_err(|e| {
                RootfsError::Io {
                    id: id.into(),
                    step: "unmount".into(),
                    source: e.into(),
                }
            })
        };
        if let Ok(entries) = fs::read_dir(dir.join("image-volumes")) {
            for entry in entries.flatten() {
                if is_mount_point(&entry.path()) {
                    unmount(&entry.path())?;
                }
            }
        }
        let merged = dir.join("merged");
        if is_mount_point(&merged) {
            unmount(&merged)?;
        }
        remove_tree(&dir).map_err(|source| RootfsError::Io {
            id: id.into(),
            step: "remove directory".into(),
            source,
        })
    }

    /// Every container with a filesystem, and what it uses.
    pub fn list(&self) -> io::Result<Vec<(String, ContainerUse)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let id = entry.file_name().to_string_lossy().into_owned();
            for used in uses_in(&entry.path())? {
                out.push((id.clone(), used));
            }
        }
        Ok(out)
    }

    /// What container `id`'s filesystem and image volumes use (nothing if
    /// it has none).
    pub fn uses(&self, id: &str) -> Result<Vec<ContainerUse>, RootfsError> {
        check_id(id)?;
        uses_in(&self.container_dir(id)).map_err(|source| RootfsError::Io {
            id: id.into(),
            step: "read what it uses".into(),
            source,
        })
    }
}

/// The images a container directory records it uses: its root filesystem's
/// and its image volumes'.
fn uses_in(dir: &Path) -> io::Result<Vec<ContainerUse>> {
    let mut out = Vec::new();
    match fs::read(dir.join("image.json")) {
        Ok(bytes) => out.push(serde_json::from_slice(&bytes).map_err(io::Error::other)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let volumes = match fs::read_dir(dir.join("image-volumes")) {
        Ok(volumes) => volumes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for volume in volumes {
        let path = volume?.path();
        if path.extension().is_some_and(|e| e == "json") {
            out.push(serde_json::from_slice(&fs::read(&path)?).map_err(io::Error::other)?);
        }
    }
    Ok(out)
}

/// A path as an overlay option: characters that separate options or layers are refused.
fn option_path(p: &Path) -> io::Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| io::Error::other(format!("{p:?} is not UTF-8")))?;
    if s.contains([':', ',', '\\']) {
        return Err(io::Error::other(format!(
            "path {s:?} contains ':', ',' or '\\', which overlay options cannot carry"
        )));
    }
    Ok(s.to_string())
}

/// Whether `path` is the root of a mount (its device differs from its parent's,
/// or /proc/self/mountinfo lists it).
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp == want)
}
