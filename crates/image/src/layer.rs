//! Applying one layer blob to a staging snapshot in a single pass: the bytes are
//! written to the content store (when they come from the network), hashed
//! against the blob digest, decompressed (gzip, zstd or none, recognised by
//! their magic bytes), hashed against the diff ID, and unpacked, all as they
//! stream in, so unpacking overlaps the download.

use crate::content::{BlobWriter, ContentError};
use crate::digest::{Digest, Hasher};
use crate::unpack::{unpack_layer, UnpackError};
use bytes::Bytes;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The blob is not what the manifest said.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// The uncompressed layer is not what the image config said.
    #[error("layer {layer}: diff ID mismatch: config says {expected}, content is {actual}")]
    DiffId {
        /// The layer blob.
        layer: Digest,
        /// The config's diff ID.
        expected: Digest,
        /// What the uncompressed bytes hash to.
        actual: Digest,
    },
    /// The tar stream was refused or could not be written.
    #[error("layer {layer}: {source}")]
    Unpack {
        /// The layer blob.
        layer: Digest,
        /// The cause.
        source: UnpackError,
    },
    /// Decompression failed.
    #[error("layer {layer}: decompress: {source}")]
    Decompress {
        /// The layer blob.
        layer: Digest,
        /// The cause.
        source: io::Error,
    },
}

/// What was applied.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    /// Size of the uncompressed tar.
    pub unpacked_size: u64,
}

/// Bytes arriving from a download task.
pub struct ChannelSource {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelSource {
    /// Read what `rx` delivers until its sender is dropped.
    pub fn new(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Passes bytes through while writing them to a blob (if any).
struct Tee<'a, R> {
    inner: R,
    blob: Option<&'a mut BlobWriter>,
    error: Option<ContentError>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(blob) = self.blob.as_mut() {
            if let Err(e) = blob.write(&buf[..n]) {
                let msg = e.to_string();
                self.error = Some(e);
                return Err(io::Error::other(msg));
            }
        }
        Ok(n)
    }
}

/// Counts and hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Apply the layer blob `layer` read from `source` into `dest`; when `blob` is
/// given, the bytes are also stored and the blob committed if (and only if)
/// everything checked out.
pub fn apply(
    source: impl Read,
    mut blob: Option<BlobWriter>,
    layer: &Digest,
    diff_id: &Digest,
    dest: &Path,
) -> Result<Applied, LayerError> {
    let mut tee = Tee {
        inner: source,
        blob: blob.as_mut(),
        error: None,
    };
    let result = decode_and_unpack(&mut tee, layer, dest);
    // A failing blob write is the real cause of whatever the decoder then saw.
    if let Some(e) = tee.error.take() {
        return Err(e.into());
    }
    let (actual, unpacked_size) = match result {
        Ok(r) => r,
        Err(e) => {
            // Corrupt bytes make the decoder or the tar reader fail first; the
            // blob's digest says what really happened, so read the rest and ask it.
            if tee.blob.is_some() {
                let _ = io::copy(&mut tee, &mut io::sink());
                if let Some(write_error) = tee.error.take() {
                    return Err(write_error.into());
                }
                if let Some(blob) = tee.blob.as_deref() {
                    blob.check()?;
                }
            }
            return Err(e);
        }
    };
    // Whatever the tar reader left unread (padding, a trailing frame) still
    // belongs to the blob and its digest.
    io::copy(&mut tee, &mut io::sink()).map_err(|source| LayerError::Decompress {
        layer: layer.clone(),
        source,
    })?;
    if let Some(e) = tee.error.take() {
        return Err(e.into());
    }
    if let Some(blob) = blob {
        blob.commit()?;
    }
    if &actual != diff_id {
        return Err(LayerError::DiffId {
            layer: layer.clone(),
            expected: diff_id.clone(),
            actual,
        });
    }
    Ok(Applied { unpacked_size })
}

fn decode_and_unpack(
    raw: impl Read,
    layer: &Digest,
    dest: &Path,
) -> Result<(Digest, u64), LayerError> {
    let decompress_err = |source| LayerError::Decompress {
        layer: layer.clone(),
        source,
    };
    let mut buffered = BufReader::with_capacity(256 * 1024, raw);
    let magic = buffered.fill_buf().map_err(decompress_err)?;
    let decoder: Box<dyn Read + '_> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(decompress_err)?)
    } else {
        Box::new(buffered)
    };
    let mut hashing = Hashing {
        inner: decoder,
        hasher: Hasher::new(),
        count: 0,
    };
    match unpack_layer(&mut hashing, dest) {
        Ok(_) => {}
        Err(source) => {
            return Err(LayerError::Unpack {
                layer: layer.clone(),
                source,
            })
        }
    }
    io::copy(&mut hashing, &mut io::sink()).map_err(decompress_err)?;
    Ok((hashing.hasher.finish(), hashing.count))
}
