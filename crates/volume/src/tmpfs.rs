//! tmpfs sizes and options: the pod's `/dev/shm` and memory-backed emptyDirs.

/// The size of a pod's `/dev/shm` (containerd's default, `size=65536k`).
pub const SHM_SIZE: u64 = 64 << 20;

/// The size of a memory-backed emptyDir, by kubelet's rule (pkg/volume/emptydir
/// `calculateEmptyDirMemorySize`, SizeMemoryBackedVolumes): the node's allocatable
/// memory, lowered to the pod's memory limit (its cgroup's) and then to the volume's
/// `sizeLimit`, each only when positive and not larger. The tmpfs holds pages charged
/// to the pod, so it should not outgrow what the pod may use.
pub fn memory_empty_dir_size(
    size_limit: Option<u64>,
    pod_memory_limit: Option<i64>,
    node_memory: u64,
) -> u64 {
    let mut size = node_memory;
    if let Some(pod) = pod_memory_limit.and_then(|m| u64::try_from(m).ok()) {
        if pod > 0 && pod <= size {
            size = pod;
        }
    }
    if let Some(volume) = size_limit {
        if volume > 0 && volume <= size {
            size = volume;
        }
    }
    size
}

/// Why tmpfs options cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TmpfsOptionsError {
    /// Bits beyond the permission, sticky, setgid and setuid bits.
    #[error("mode {0:o} is not a file mode")]
    NotAMode(u32),
    /// tmpfs reads `size=0` as "unlimited", never as "empty".
    #[error("size 0 would make the tmpfs unlimited")]
    Unlimited,
}

/// The tmpfs mount data for a root directory mode and, when given, a size in bytes
/// (the kernel rounds it up to whole pages): `mode=1777,size=67108864`.
pub fn tmpfs_options(size_bytes: Option<u64>, mode: u32) -> Result<String, TmpfsOptionsError> {
    if mode > 0o7777 {
        return Err(TmpfsOptionsError::NotAMode(mode));
    }
    let mut data = format!("mode={mode:o}");
    match size_bytes {
        Some(0) => return Err(TmpfsOptionsError::Unlimited),
        Some(size) => data.push_str(&format!(",size={size}")),
        None => {}
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_empty_dir_takes_the_smallest_positive_bound() {
        let gi = 1u64 << 30;
        // Nothing set: the node's memory.
        assert_eq!(memory_empty_dir_size(None, None, 8 * gi), 8 * gi);
        // The pod's limit, then the volume's.
        assert_eq!(memory_empty_dir_size(None, Some(1 << 30), 8 * gi), gi);
        assert_eq!(
            memory_empty_dir_size(Some(64 << 20), Some(1 << 30), 8 * gi),
            64 << 20
        );
        // A sizeLimit above the pod's limit does not raise it.
        assert_eq!(
            memory_empty_dir_size(Some(2 * gi), Some(1 << 30), 8 * gi),
            gi
        );
        // Bounds above the node's memory, zero or negative are ignored.
        assert_eq!(
            memory_empty_dir_size(Some(16 * gi), Some(16 << 30), 8 * gi),
            8 * gi
        );
        assert_eq!(memory_empty_dir_size(Some(0), Some(0), 8 * gi), 8 * gi);
        assert_eq!(memory_empty_dir_size(None, Some(-1), 8 * gi), 8 * gi);
        assert_eq!(memory_empty_dir_size(Some(gi), None, 8 * gi), gi);
    }

    #[test]
    fn tmpfs_options_name_mode_and_size() {
        assert_eq!(
            tmpfs_options(Some(SHM_SIZE), 0o1777).unwrap(),
            "mode=1777,size=67108864"
        );
        assert_eq!(tmpfs_options(None, 0o777).unwrap(), "mode=777");
        assert_eq!(
            tmpfs_options(Some(0), 0o777),
            Err(TmpfsOptionsError::Unlimited)
        );
        assert_eq!(
            tmpfs_options(None, 0o10000),
            Err(TmpfsOptionsError::NotAMode(0o10000))
        );
    }
}
