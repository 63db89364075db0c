//! kubelet's image garbage collection (pkg/kubelet/images/
//! image_gc_manager.go `GarbageCollect`, started by pkg/kubelet/kubelet.go
//! `StartGarbageCollection`): one task for the node, at once and then every
//! ImageGCPeriod (kubelet's 5 minutes; `PODRUN_IMAGE_GC_PERIOD_MS` for
//! tests). Each round removes the unused images past `imageMaximumGCAge`,
//! then measures the file system holding the image store (statvfs of the
//! root) and, when its usage is at or over `imageGCHighThresholdPercent`,
//! removes unused images, least recently used first and each pulled at least
//! `imageMinimumGCAge` ago, until the usage would be at
//! `imageGCLowThresholdPercent`. Which images and in which order is
//! `podrun_image::gc`'s pure decision; the store carries it out.
//!
//! What a user sees is kubelet's: a Warning `FreeDiskSpaceFailed` event on
//! the node when not enough could be freed, `InvalidDiskCapacity` for a file
//! system of no size, and `ImageGCFailed` when a round fails again after a
//! failed one. The agent's event recording counts a repeated event up, so a
//! node stuck over its threshold shows one event `(xN over …)`, and a failed
//! round waits for the next period: nothing spins.

use crate::Agent;
use podrun_runtime::image_gc::Policy;
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;

/// Why a round of image garbage collection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImageGcError {
    /// The image file system could not be measured.
    #[error("measure the image file system {}: {source}", .path.display())]
    Measure {
        /// The store's root.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// kubelet's InvalidDiskCapacity.
    #[error("invalid capacity 0 on image filesystem")]
    InvalidCapacity,
    /// The store refused the collection as a whole.
    #[error(transparent)]
    Images(#[from] podrun_runtime::images::ImageServiceError),
    /// Some images could not be removed (the others were).
    #[error("wanted to free {wanted} bytes, but freed {freed} bytes space with errors in image deletion: {errors}")]
    Removal {
        /// What was asked for.
        wanted: u64,
        /// What was freed.
        freed: u64,
        /// Each removal's error.
        errors: String,
    },
    /// kubelet's FreeDiskSpaceFailed.
    #[error("Failed to garbage collect required amount of images. Attempted to free {wanted} bytes, but only found {freed} bytes eligible to free.")]
    NotEnough {
        /// What was asked for.
        wanted: u64,
        /// What was freed.
        freed: u64,
    },
    /// The blocking task died.
    #[error("image garbage collection task: {0}")]
    Task(String),
}

/// How often images are collected (kubelet's ImageGCPeriod).
pub(crate) fn period() -> Duration {
    std::env::var("PODRUN_IMAGE_GC_PERIOD_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(300), Duration::from_millis)
}

/// kubelet's decision: with the image file system at `capacity` bytes of
/// which `available` are free, how many bytes to free (`None` below the
/// high threshold): usage is `100 - available * 100 / capacity` percent
/// (integer division), collected at `usage >= high`, down to `low`.
pub(crate) fn amount_to_free(capacity: u64, available: u64, high: u64, low: u64) -> Option<u64> {
    if capacity == 0 {
        return None;
    }
    let available = available.min(capacity);
    let usage = 100 - (u128::from(available) * 100 / u128::from(capacity)) as u64;
    if usage < high {
        return None;
    }
    let target = u128::from(capacity) * u128::from(100 - low.min(100)) / 100;
    Some(target.saturating_sub(u128::from(available)) as u64)
}

/// Capacity and available bytes of the file system holding `path`.
fn fs_bytes(path: &Path) -> Result<(u64, u64), ImageGcError> {
    let s = rustix::fs::statvfs(path).map_err(|e| ImageGcError::Measure {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok((s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize))
}

/// Remove unused images until `bytes_to_free` bytes are freed (the minimum
/// age protecting fresh pulls, as in every round), least recently used
/// first; the bytes freed. The eviction manager calls this first under disk
/// pressure, as kubelet's reclaims node-level resources (its
/// `DeleteUnusedImages`) before it evicts a pod.
pub(crate) async fn collect_images(agent: &Agent, bytes_to_free: u64) -> Result<u64, ImageGcError> {
    let policy = Policy {
        max_age: None,
        ..agent.image_gc.policy
    };
    collect(agent, policy, bytes_to_free).await
}

/// One pass of the store's collection on a blocking thread (it takes the
/// store's `gc` lock and deletes files): the bytes freed towards
/// `bytes_to_free`. Removal failures become an error after the rest went on.
async fn collect(agent: &Agent, policy: Policy, bytes_to_free: u64) -> Result<u64, ImageGcError> {
    let images = agent.image_service.clone();
    let now = chrono::Utc::now();
    let outcome =
        tokio::task::spawn_blocking(move || images.collect_images(&policy, bytes_to_free, now))
            .await
            .map_err(|e| ImageGcError::Task(e.to_string()))??;
    for f in &outcome.removed {
        let why = if f.for_age {
            "unused longer than the maximum age"
        } else {
            "to free disk space"
        };
        tracing::info!(
            "image garbage collection: removed {} ({}): {} bytes, {why}",
            f.names.join(", "),
            f.id.short(),
            f.bytes
        );
    }
    if !outcome.errors.is_empty() {
        let errors: Vec<String> = outcome.errors.iter().map(|e| e.to_string()).collect();
        return Err(ImageGcError::Removal {
            wanted: bytes_to_free,
            freed: outcome.freed,
            errors: format!("[{}]", errors.join(", ")),
        });
    }
    Ok(outcome.freed)
}

/// One round (kubelet's GarbageCollect).
async fn garbage_collect(agent: &Agent) -> Result<(), ImageGcError> {
    let config = agent.image_gc;
    if config.policy.max_age.is_some() {
        collect(agent, config.policy, 0).await?;
    }
    if config.high_threshold_percent >= 100 {
        return Ok(());
    }
    let root = agent.settings.root.clone();
    let (capacity, available) = fs_bytes(&root)?;
    if capacity == 0 {
        agent.node_event(
            "Warning",
            "InvalidDiskCapacity",
            &ImageGcError::InvalidCapacity.to_string(),
        );
        return Err(ImageGcError::InvalidCapacity);
    }
    let Some(wanted) = amount_to_free(
        capacity,
        available,
        config.high_threshold_percent,
        config.low_threshold_percent,
    ) else {
        return Ok(());
    };
    tracing::info!(
        "image garbage collection: disk usage on {} is over the high threshold ({}%): freeing {wanted} bytes down to the low threshold ({}%)",
        root.display(),
        config.high_threshold_percent,
        config.low_threshold_percent
    );
    let freed = collect_images(agent, wanted).await?;
    if freed < wanted {
        let e = ImageGcError::NotEnough { wanted, freed };
        agent.node_event("Warning", "FreeDiskSpaceFailed", &e.to_string());
        return Err(e);
    }
    Ok(())
}

/// The image garbage collector's loop; it ends with the agent. A round
/// that fails is logged, and when the one before failed too it is also the
/// node's `ImageGCFailed` event, as kubelet records only repeated failures.
pub(crate) async fn run(agent: Weak<Agent>) {
    let period = period();
    let mut failed_before = false;
    loop {
        let Some(a) = agent.upgrade() else {
            return;
        };
        // kubelet stubs its image GC out when nothing could ever trigger it.
        if a.image_gc.high_threshold_percent >= 100 && a.image_gc.policy.max_age.is_none() {
            tracing::info!("image garbage collection is off: imageGCHighThresholdPercent is 100 and imageMaximumGCAge 0");
            return;
        }
        match garbage_collect(&a).await {
            Ok(()) => failed_before = false,
            Err(e) => {
                if failed_before {
                    tracing::warn!("image garbage collection failed multiple times in a row: {e}");
                    a.node_event("Warning", "ImageGCFailed", &e.to_string());
                } else {
                    tracing::warn!("image garbage collection failed: {e}");
                }
                failed_before = true;
            }
        }
        drop(a);
        tokio::time::sleep(period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_at_the_high_threshold_frees_down_to_the_low_one() {
        // 100 bytes, 15 free: 85 % used, at kubelet's default high threshold.
        assert_eq!(amount_to_free(100, 15, 85, 80), Some(5));
        // 84 % used: nothing to do.
        assert_eq!(amount_to_free(100, 16, 85, 80), None);
        // Integer division: 15.9 % free reads as 15, so 85 % used.
        assert_eq!(amount_to_free(1000, 159, 85, 80), Some(41));
        // More free than capacity (kubelet clamps it).
        assert_eq!(amount_to_free(100, 200, 85, 80), None);
        // Full.
        assert_eq!(amount_to_free(1 << 30, 0, 85, 80), Some((1 << 30) / 5));
        // A zero capacity is the caller's InvalidDiskCapacity.
        assert_eq!(amount_to_free(0, 0, 85, 80), None);
        // A threshold of 0 always collects, to the low threshold.
        assert_eq!(amount_to_free(100, 100, 0, 0), Some(0));
    }

    #[test]
    fn the_messages_are_kubelets() {
        assert_eq!(
            ImageGcError::NotEnough {
                wanted: 5000,
                freed: 1200
            }
            .to_string(),
            "Failed to garbage collect required amount of images. Attempted to free 5000 bytes, but only found 1200 bytes eligible to free."
        );
        assert_eq!(
            ImageGcError::InvalidCapacity.to_string(),
            "invalid capacity 0 on image filesystem"
        );
    }
}
