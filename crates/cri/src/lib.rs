//! The CRI v1 gRPC server: a thin adapter that serves kubelet's (and
//! crictl's, critest's) RuntimeService and ImageService calls on the
//! runtime's CRI-shaped traits ([`podrun_runtime::RuntimeService`],
//! [`podrun_runtime::ImageService`]) over a unix socket.
//!
//! - [`proto`]: the messages and services of api.proto (`runtime.v1`,
//!   k8s.io/cri-api v0.36.3, vendored in `proto/api.proto`), compiled at build
//!   time with tonic/prost;
//! - [`service`]: the RPCs on the runtime;
//! - [`events`]: GetContainerEvents' stream;
//! - `convert`: protobuf messages to the runtime's configs and back;
//! - [`authority`]: the front every connection passes through, so clients
//!   that send the socket path as HTTP/2 `:authority` (which the `h2` crate
//!   refuses) are served;
//! - [`streaming`]: the HTTP server behind Exec, Attach and PortForward's URLs
//!   (SPDY/3.1 and WebSocket).

pub mod authority;
mod convert;
pub mod events;
pub mod service;
pub mod streaming;

pub use service::Cri;

use std::path::{Path, PathBuf};

/// The messages and services of CRI v1 (`runtime.v1`, k8s.io/cri-api v0.36.3).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("runtime.v1");
}

/// Where `podrun serve --cri` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/podrun/cri.sock";

/// The largest message either side may send: kubelet's own limit (16 MiB).
const MAX_MESSAGE: usize = 16 << 20;

/// Why the server could not serve.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The socket could not be made.
    #[error("CRI socket {}: {step}: {source}", .path.display())]
    Socket {
        /// The socket's path.
        path: PathBuf,
        /// What was being done.
        step: &'static str,
        /// The system's error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("CRI server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

impl tonic::transport::server::Connected for authority::AuthorityFront<tokio::net::UnixStream> {
    type ConnectInfo = <tokio::net::UnixStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.get_ref().connect_info()
    }
}

/// Bind the CRI socket at `path`: its directory made (mode 0700 when new), a
/// stale socket replaced, the socket itself mode 0660 (root's, as
/// containerd's).
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener, CriError> {
    let fail = |step| {
        move |source| CriError::Socket {
            path: path.to_path_buf(),
            step,
            source,
        }
    };
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(fail("create its directory"))?;
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail("remove the old socket")(e)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(fail("bind"))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(fail("chmod"))?;
    Ok(listener)
}

/// Serve `cri` on `listener` until `shutdown` completes; the socket file at
/// `path` is removed then.
pub async fn serve(
    listener: tokio::net::UnixListener,
    path: &Path,
    cri: Cri,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), CriError> {
    use futures_util::StreamExt;
    use proto::image_service_server::ImageServiceServer;
    use proto::runtime_service_server::RuntimeServiceServer;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener)
        .map(|conn| conn.map(authority::AuthorityFront::new));
    let served = tonic::transport::Server::builder()
        .add_service(
            RuntimeServiceServer::new(cri.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            ImageServiceServer::new(cri)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = std::fs::remove_file(path);
    Ok(served?)
}
