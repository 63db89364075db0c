//! The content store: every blob (manifest, config, layer) under
//! `content/blobs/sha256/<hex>`, visible only once verified. Writes go to
//! `content/ingest/<hex>.partial`, are checked against digest and size, synced,
//! and renamed into place, so an interrupted pull never leaves a half blob
//! where a reader could find it.

use crate::digest::{Digest, Hasher};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A blob that is not what its descriptor promised, or could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The bytes hash to something else.
    #[error("blob {expected}: digest mismatch (got {actual})")]
    DigestMismatch {
        /// What the descriptor said.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// Fewer or more bytes than the descriptor said.
    #[error("blob {digest}: {}", size_message(*.expected, *.actual))]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// What the descriptor said.
        expected: u64,
        /// How many bytes came.
        actual: u64,
    },
    /// A file operation failed.
    #[error("blob {digest}: {step}: {source}")]
    Io {
        /// The blob.
        digest: Digest,
        /// What was being done.
        step: &'static str,
        /// The cause.
        source: io::Error,
    },
}

fn size_message(expected: u64, actual: u64) -> String {
    if actual < expected {
        format!("truncated: got {actual} of {expected} bytes")
    } else {
        format!("larger than its descriptor: more than {expected} bytes")
    }
}

/// The blob directory of one store root.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Open (creating) the store under `root/content`.
    pub fn open(root: &Path) -> io::Result<Self> {
        let blobs = root.join("content/blobs/sha256");
        let ingest = root.join("content/ingest");
        fs::create_dir_all(&blobs)?;
        fs::create_dir_all(&ingest)?;
        Ok(Self { blobs, ingest })
    }

    /// Where a committed blob lives.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Whether the blob is committed.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).exists()
    }

    /// Read a whole (small) blob back, checking its digest again.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let bytes = fs::read(self.path(digest)).map_err(|source| ContentError::Io {
            digest: digest.clone(),
            step: "read",
            source,
        })?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(ContentError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Store a small blob held in memory, verifying it first.
    pub fn put(&self, digest: &Digest, bytes: &[u8]) -> Result<(), ContentError> {
        if self.contains(digest) {
            return Ok(());
        }
        let mut w = self.writer(digest, bytes.len() as u64)?;
        w.write(bytes)?;
        w.commit()
    }

    /// Start writing a blob. Each writer has its own temp file (named after
    /// the blob and this process), so concurrent writers never share one.
    pub fn writer(&self, digest: &Digest, size: u64) -> Result<BlobWriter, ContentError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = self.ingest.join(format!(
            "{}.{}.{n}.partial",
            digest.hex(),
            std::process::id()
        ));
        let file = File::create(&temp).map_err(|source| ContentError::Io {
            digest: digest.clone(),
            step: "create",
            source,
        })?;
        Ok(BlobWriter {
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            temp,
            target: self.path(digest),
            digest: digest.clone(),
            size,
            written: 0,
            hasher: Hasher::new(),
        })
    }

    /// Remove temp files of writers whose process is gone (a pull killed mid-way).
    pub fn remove_stale_partials(&self) {
        let Ok(entries) = fs::read_dir(&self.ingest) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('.').nth(1).and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if name.ends_with(".partial") && !alive {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Remove a blob (no error when it is already gone).
    pub fn delete(&self, digest: &Digest) -> io::Result<()> {
        match fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every committed blob.
    pub fn list(&self) -> io::Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.blobs)? {
            let name = entry?.file_name();
            if let Ok(d) = format!("sha256:{}", name.to_string_lossy()).parse() {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// A blob being written: hashes and counts as it goes, refuses to grow past
/// its descriptor's size, and becomes visible only through [`BlobWriter::commit`].
/// Dropped without a commit, it removes its temp file.
pub struct BlobWriter {
    file: Option<io::BufWriter<File>>,
    temp: PathBuf,
    target: PathBuf,
    digest: Digest,
    size: u64,
    written: u64,
    hasher: Hasher,
}

impl BlobWriter {
    /// Append bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ContentError> {
        self.written += bytes.len() as u64;
        if self.written > self.size {
            return Err(ContentError::SizeMismatch {
                digest: self.digest.clone(),
                expected: self.size,
                actual: self.written,
            });
        }
        self.hasher.update(bytes);
        let file = self.file.as_mut().expect("writer used after commit");
        file.write_all(bytes).map_err(|source| ContentError::Io {
            digest: self.digest.clone(),
            step: "write",
            source,
        })
    }

    /// Whether what was written so far is the whole blob, by size and digest.
    pub fn check(&self) -> Result<(), ContentError> {
        if self.written != self.size {
            return Err(ContentError::SizeMismatch {
                digest: self.digest.clone(),
                expected: self.size,
                actual: self.written,
            });
        }
        let actual = self.hasher.clone().finish();
        if actual != self.digest {
            return Err(ContentError::DigestMismatch {
                expected: self.digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Verify size and digest, sync, and make the blob visible.
    pub fn commit(mut self) -> Result<(), ContentError> {
        if self.written != self.size {
            return Err(ContentError::SizeMismatch {
                digest: self.digest.clone(),
                expected: self.size,
                actual: self.written,
            });
        }
        let actual = std::mem::take(&mut self.hasher).finish();
        if actual != self.digest {
            return Err(ContentError::DigestMismatch {
                expected: self.digest.clone(),
                actual,
            });
        }
        let io_err = |step, source| ContentError::Io {
            digest: self.digest.clone(),
            step,
            source,
        };
        let file = self.file.take().expect("commit twice");
        let file = file
            .into_inner()
            .map_err(|e| io_err("write", e.into_error()))?;
        podrun_fs::commit(file, &self.temp, &self.target).map_err(|e| {
            let _ = fs::remove_file(&self.temp);
            io_err("commit", e)
        })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_verifies_before_the_blob_is_visible() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let good = Digest::of(b"hello");
        store.put(&good, b"hello").unwrap();
        assert_eq!(store.read(&good).unwrap(), b"hello");

        let other = Digest::of(b"other");
        let mut w = store.writer(&other, 5).unwrap();
        w.write(b"wrong").unwrap();
        let e = w.commit().unwrap_err().to_string();
        assert!(
            e.contains("digest mismatch") && e.contains(other.as_str()),
            "{e}"
        );
        assert!(!store.contains(&other));

        let mut w = store.writer(&other, 5).unwrap();
        w.write(b"oth").unwrap();
        let e = w.commit().unwrap_err().to_string();
        assert!(e.contains("truncated: got 3 of 5 bytes"), "{e}");

        let mut w = store.writer(&other, 2).unwrap();
        assert!(w.write(b"other").is_err());
        drop(w);
        assert_eq!(
            fs::read_dir(dir.path().join("content/ingest"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(store.list().unwrap(), vec![good]);
    }

    #[test]
    fn read_detects_a_corrupted_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let d = Digest::of(b"data");
        store.put(&d, b"data").unwrap();
        fs::write(store.path(&d), b"evil").unwrap();
        assert!(matches!(
            store.read(&d),
            Err(ContentError::DigestMismatch { .. })
        ));
    }
}
