//! The RuntimeService and ImageService of CRI v1 over the runtime's traits:
//! each RPC converts its request ([`crate::convert`]), calls the runtime on a
//! blocking thread, and converts the answer. The runtime's typed errors
//! become the gRPC codes containerd answers with (NotFound, AlreadyExists,
//! InvalidArgument, FailedPrecondition, DeadlineExceeded), the message naming
//! the object and the step.
//!
//! The runtime is shared with the standalone pod manager: the sandboxes made
//! here carry the annotation [`OWNER`] (never shown to the client), and only
//! those are listed, inspected or changed through the CRI. A kubelet must not
//! see, and so garbage-collect, pods it did not make.

use crate::convert;
use crate::proto as pb;
use pb::image_service_server::ImageService as PbImageService;
use pb::runtime_service_server::RuntimeService as PbRuntimeService;
use podrun_runtime::api::{self, ServiceError};
use podrun_runtime::images::ImageServiceError;
use podrun_runtime::{ImageService, RuntimeService};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The annotation that marks a sandbox as made through the CRI.
pub const OWNER: &str = "podrun.io/cri";

/// The CRI API version podrun speaks (api.proto's `runtime.v1`).
const API_VERSION: &str = "v1";

/// The CRI services over one runtime.
#[derive(Clone)]
pub struct Cri {
    runtime: Arc<dyn RuntimeService>,
    images: Arc<dyn ImageService>,
    /// Where the image store keeps its content (ImageFsInfo).
    image_fs: PathBuf,
    /// The server behind Exec, Attach and PortForward's URLs.
    streaming: Option<Arc<crate::streaming::Server>>,
    /// The image kubelet and containerd name for sandboxes (containerd's
    /// `sandbox_image`): every sandbox runs podrun's own pause process, so it
    /// is reported present (and pinned) without a pull.
    sandbox_image: String,
    /// GetContainerEvents' broadcast, kicked by every RPC that changes a
    /// sandbox or a container.
    events: Arc<crate::events::Events>,
}

/// The sandbox image reported present unless told otherwise: kubeadm's for
/// Kubernetes 1.36 (cmd/kubeadm/app/constants: PauseVersion 3.10.2).
pub const SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.10.2";

impl Cri {
    /// The services over `runtime` and `images`, whose store is under `image_fs`.
    pub fn new(
        runtime: Arc<dyn RuntimeService>,
        images: Arc<dyn ImageService>,
        image_fs: PathBuf,
    ) -> Self {
        Cri {
            runtime,
            images,
            image_fs,
            streaming: None,
            sandbox_image: SANDBOX_IMAGE.into(),
            events: Default::default(),
        }
    }

    /// Reports `image` as the sandbox image (present, pinned, never pulled).
    pub fn with_sandbox_image(mut self, image: &str) -> Self {
        self.sandbox_image = image.into();
        self
    }

    /// The sandbox image as an image of the store would be reported, when
    /// `name` names it (as given, or with docker.io's and latest's defaults
    /// written out, or by its ID).
    fn sandbox_image_named(&self, name: &str) -> Option<pb::Image> {
        let id = sandbox_image_id(&self.sandbox_image);
        let named = name == self.sandbox_image || name == id || {
            let full = |n: &str| match n.rsplit_once('/').map_or(n, |(_, last)| last).contains(':')
            {
                true => n.to_owned(),
                false => format!("{n}:latest"),
            };
            full(name) == full(&self.sandbox_image)
        };
        named.then(|| pb::Image {
            id: id.clone(),
            repo_tags: vec![self.sandbox_image.clone()],
            spec: Some(pb::ImageSpec {
                image: id,
                ..Default::default()
            }),
            pinned: true,
            ..Default::default()
        })
    }

    /// Serves Exec, Attach and PortForward through `server` (without one
    /// they answer Unimplemented).
    pub fn with_streaming(mut self, server: Arc<crate::streaming::Server>) -> Self {
        self.streaming = Some(server);
        self
    }

    /// A URL of the streaming server for `request`.
    fn stream_url(&self, rpc: &str, request: crate::streaming::Pending) -> Result<String, Status> {
        let Some(server) = &self.streaming else {
            return Err(Status::unimplemented(format!("{rpc}: {NO_STREAMING}")));
        };
        server.url(request).map_err(|e| match e {
            crate::streaming::StreamingError::Busy => Status::resource_exhausted(e.to_string()),
            e => Status::internal(e.to_string()),
        })
    }
}

/// The sandbox image's ID: a digest of its name (it has no content here).
fn sandbox_image_id(name: &str) -> String {
    use std::fmt::Write;
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("podrun sandbox image {name}").as_bytes(),
    );
    digest
        .as_ref()
        .iter()
        .fold("sha256:".to_owned(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// kubelet's checks of a remote command's streams (cri-streaming server.go
/// `validateExecRequest`).
fn remote_streams(
    id: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Result<crate::streaming::Streams, Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("missing required container_id"));
    }
    if tty && stderr {
        return Err(Status::invalid_argument(
            "tty and stderr cannot both be true",
        ));
    }
    if !stdin && !stdout && !stderr {
        return Err(Status::invalid_argument(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    Ok(crate::streaming::Streams {
        stdin,
        stdout,
        stderr,
        tty,
    })
}

/// The gRPC status of a runtime error.
fn status(e: ServiceError) -> Status {
    let message = e.to_string();
    match e {
        ServiceError::SandboxNotFound(_) | ServiceError::ContainerNotFound(_) => {
            Status::not_found(message)
        }
        ServiceError::Exists { .. } => Status::already_exists(message),
        ServiceError::Invalid { .. } | ServiceError::UnknownHandler { .. } => {
            Status::invalid_argument(message)
        }
        ServiceError::NotRunning { .. } => Status::failed_precondition(message),
        ServiceError::ExecTimeout { .. } => Status::deadline_exceeded(message),
        ServiceError::Failed { .. } | ServiceError::Several { .. } => Status::unknown(message),
    }
}

fn image_status_error(e: ImageServiceError) -> Status {
    Status::unknown(e.to_string())
}

/// Run `f` (which blocks: the runtime talks to monitors, spawns, pulls) on a
/// thread that may block.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("the call's thread failed: {e}")))?
}

/// A required ID field: empty is `InvalidArgument`.
fn required<'a>(id: &'a str, field: &str) -> Result<&'a str, Status> {
    if id.is_empty() {
        Err(Status::invalid_argument(format!("{field}: required")))
    } else {
        Ok(id)
    }
}

/// Whether the sandbox was made through the CRI.
fn owned(annotations: &std::collections::BTreeMap<String, String>) -> bool {
    annotations.contains_key(OWNER)
}

/// Sandbox `id`'s status, if it is one of the CRI's; `NotFound` otherwise.
fn sandbox(runtime: &dyn RuntimeService, id: &str) -> Result<api::PodSandboxStatus, Status> {
    let s = runtime.pod_sandbox_status(id).map_err(status)?;
    if owned(&s.sandbox.annotations) {
        Ok(s)
    } else {
        Err(status(ServiceError::SandboxNotFound(id.into())))
    }
}

/// Container `id`'s status, if its sandbox is one of the CRI's.
fn container(runtime: &dyn RuntimeService, id: &str) -> Result<api::ContainerStatus, Status> {
    let c = runtime.container_status(id).map_err(status)?;
    match sandbox(runtime, &c.sandbox_id) {
        Ok(_) => Ok(c),
        Err(_) => Err(status(ServiceError::ContainerNotFound(id.into()))),
    }
}

/// Container `id`, one of the CRI's, if it is running (`rpc` needs it to be).
fn running(runtime: &dyn RuntimeService, id: &str, rpc: &'static str) -> Result<(), Status> {
    let c = container(runtime, id)?;
    if c.state != api::ContainerState::Running {
        return Err(status(ServiceError::NotRunning {
            call: rpc,
            what: format!("container {id}"),
        }));
    }
    Ok(())
}

/// How long past its grace period a stopped container may take to be
/// reported exited (its monitor kills it at the end of the grace period).
const STOP_MARGIN: Duration = Duration::from_secs(10);

/// Wait until container `id` no longer runs, as StopContainer returns only
/// then (containerd's too): the runtime's stop asks its monitor, which
/// signals, waits out `grace` and kills. Polled with a back-off from 5 ms to
/// 100 ms.
fn wait_stopped(runtime: &dyn RuntimeService, id: &str, grace: Duration) -> Result<(), Status> {
    let deadline = std::time::Instant::now() + grace + STOP_MARGIN;
    let mut pause = Duration::from_millis(5);
    loop {
        match runtime.container_status(id) {
            Ok(c) if c.state == api::ContainerState::Running => {}
            Ok(_) | Err(ServiceError::ContainerNotFound(_)) => return Ok(()),
            Err(e) => return Err(status(e)),
        }
        if std::time::Instant::now() >= deadline {
            return Err(Status::deadline_exceeded(format!(
                "container {id}: StopContainer: still running {:?} after its {grace:?} grace period",
                STOP_MARGIN
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A call on an ID that need not exist (stop, remove): `Ok(None)` when it
/// does not, as CRI's idempotent calls want.
fn if_found<T>(found: Result<T, Status>) -> Result<Option<T>, Status> {
    match found {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.code() == tonic::Code::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What the client sees of a sandbox: without [`OWNER`].
fn shown(mut s: api::PodSandbox) -> api::PodSandbox {
    s.annotations.remove(OWNER);
    s
}

/// The IDs of the CRI's sandboxes.
fn owned_sandboxes(runtime: &dyn RuntimeService) -> Result<Vec<api::PodSandbox>, Status> {
    Ok(runtime
        .list_pod_sandbox(&api::PodSandboxFilter::default())
        .map_err(status)?
        .into_iter()
        .filter(|s| owned(&s.annotations))
        .collect())
}

/// The containers of the CRI's sandboxes that ListContainers' (and
/// ListContainerStats') filter lets through: an ID, a sandbox, a state and
/// labels, each only when given.
fn owned_containers(
    runtime: &dyn RuntimeService,
    id: &str,
    sandbox_id: &str,
    state: Option<api::ContainerState>,
    labels: &HashMap<String, String>,
) -> Result<Vec<api::ContainerStatus>, Status> {
    let sandboxes: std::collections::HashSet<String> = owned_sandboxes(runtime)?
        .into_iter()
        .map(|s| s.id)
        .collect();
    let by = api::ContainerFilter {
        id: (!id.is_empty()).then(|| id.to_owned()),
        sandbox_id: (!sandbox_id.is_empty()).then(|| sandbox_id.to_owned()),
        state,
    };
    Ok(runtime
        .list_containers(&by)
        .map_err(status)?
        .into_iter()
        .filter(|c| sandboxes.contains(&c.sandbox_id))
        .filter(|c| {
            labels
                .iter()
                .all(|(k, v)| c.config.labels.get(k) == Some(v))
        })
        .collect())
}

fn verbose_info(verbose: bool, info: impl FnOnce() -> String) -> HashMap<String, String> {
    if verbose {
        HashMap::from([("info".to_owned(), info())])
    } else {
        HashMap::new()
    }
}

/// A sandbox's status as PodSandboxStatus (and GetContainerEvents) report it.
fn sandbox_status_out(s: api::PodSandboxStatus) -> pb::PodSandboxStatus {
    let sandbox = shown(s.sandbox);
    let mut ips = s.ips.iter().map(|ip| ip.to_string());
    let network = ips.next().map(|ip| pb::PodSandboxNetworkStatus {
        ip,
        additional_ips: ips.map(|ip| pb::PodIp { ip }).collect(),
    });
    pb::PodSandboxStatus {
        id: sandbox.id.clone(),
        metadata: Some(convert::sandbox_metadata_out(&sandbox.metadata)),
        state: convert::sandbox_state_out(sandbox.state),
        created_at: convert::nanos(&sandbox.created_at),
        network: Some(network.unwrap_or_default()),
        linux: Some(pb::LinuxPodSandboxStatus {
            namespaces: Some(pb::Namespace {
                options: Some(convert::namespace_options_out(
                    &s.config.linux.security_context.namespace_options,
                )),
            }),
        }),
        labels: sandbox.labels.into_iter().collect(),
        annotations: sandbox.annotations.into_iter().collect(),
        runtime_handler: sandbox.runtime_handler,
    }
}

/// One look at the CRI's sandboxes and containers for GetContainerEvents.
fn snapshot(runtime: &dyn RuntimeService) -> Result<crate::events::Snapshot, Status> {
    use crate::events::Seen;
    let mut out = crate::events::Snapshot::default();
    for s in owned_sandboxes(runtime)? {
        out.seen.insert(s.id.clone(), Seen::sandbox(&s));
        // Gone since it was listed: its events say so at the next look.
        if let Ok(status) = runtime.pod_sandbox_status(&s.id) {
            out.sandboxes
                .insert(s.id.clone(), sandbox_status_out(status));
        }
    }
    for c in owned_containers(runtime, "", "", None, &HashMap::new())? {
        out.seen.insert(c.id.clone(), Seen::container(&c));
        out.sandbox_of.insert(c.id.clone(), c.sandbox_id.clone());
        out.containers
            .entry(c.sandbox_id.clone())
            .or_default()
            .push(convert::container_status_out(&c));
    }
    Ok(out)
}

/// An RPC podrun does not serve yet, with the reason.
fn unimplemented<T>(rpc: &str, why: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!("{rpc}: {why}")))
}

const NO_STREAMING: &str = "this CRI server runs without a streaming server";
const NO_METRICS: &str =
    "podrun serves statistics (ContainerStats, PodSandboxStats), not the metrics API";

#[tonic::async_trait]
impl PbRuntimeService for Cri {
    async fn version(
        &self,
        _: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(pb::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "podrun".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: API_VERSION.into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<pb::RunPodSandboxRequest>,
    ) -> Result<Response<pb::RunPodSandboxResponse>, Status> {
        let request = request.into_inner();
        let mut config = convert::sandbox_config(
            request
                .config
                .ok_or_else(|| Status::invalid_argument("config: required"))?,
        )?;
        let m = &config.metadata;
        if m.name.is_empty() || m.namespace.is_empty() || m.uid.is_empty() {
            return Err(Status::invalid_argument(
                "config.metadata: name, namespace and uid are required",
            ));
        }
        config.annotations.insert(OWNER.into(), "true".into());
        let runtime = self.runtime.clone();
        let handler = request.runtime_handler;
        let what = format!("pod {}/{}", m.namespace, m.name);
        let id = blocking(move || {
            runtime.run_pod_sandbox(&config, &handler).map_err(|e| {
                let s = status(e);
                Status::new(s.code(), format!("{what}: {}", s.message()))
            })
        })
        .await?;
        self.events.kick();
        Ok(Response::new(pb::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<pb::StopPodSandboxRequest>,
    ) -> Result<Response<pb::StopPodSandboxResponse>, Status> {
        let id = required(&request.get_ref().pod_sandbox_id, "pod_sandbox_id")?.to_owned();
        let runtime = self.runtime.clone();
        blocking(move || {
            if if_found(sandbox(runtime.as_ref(), &id))?.is_some() {
                // containerd stops what still runs in the sandbox at once
                // (internal/cri/server/sandbox_stop.go: stopContainer with
                // timeout 0): kubelet has given each its grace period already.
                let running = runtime
                    .list_containers(&api::ContainerFilter {
                        sandbox_id: Some(id.clone()),
                        state: Some(api::ContainerState::Running),
                        ..Default::default()
                    })
                    .map_err(status)?;
                for c in running {
                    match runtime.stop_container(&c.id, Some(Duration::ZERO)) {
                        Ok(()) | Err(ServiceError::ContainerNotFound(_)) => {}
                        Err(e) => return Err(status(e)),
                    }
                }
                runtime.stop_pod_sandbox(&id, None).map_err(status)?;
            }
            Ok(())
        })
        .await?;
        self.events.kick();
        Ok(Response::new(pb::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<pb::RemovePodSandboxRequest>,
    ) -> Result<Response<pb::RemovePodSandboxResponse>, Status> {
        let id = required(&request.get_ref().pod_sandbox_id, "pod_sandbox_id")?.to_owned();
        let runtime = self.runtime.clone();
        blocking(move || {
            if if_found(sandbox(runtime.as_ref(), &id))?.is_some() {
                runtime.remove_pod_sandbox(&id).map_err(status)?;
            }
            Ok(())
        })
        .await?;
        self.events.kick();
        Ok(Response::new(pb::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<pb::PodSandboxStatusRequest>,
    ) -> Result<Response<pb::PodSandboxStatusResponse>, Status> {
        let request = request.into_inner();
        let id = required(&request.pod_sandbox_id, "pod_sandbox_id")?.to_owned();
        let runtime = self.runtime.clone();
        let s = blocking(move || sandbox(runtime.as_ref(), &id)).await?;
        let info = verbose_info(request.verbose, || {
            format!(
                "{{\"pid\":{},\"runtimeHandler\":{:?},\"namespaces\":{:?}}}",
                s.monitor_pid.unwrap_or(0),
                s.sandbox.runtime_handler,
                s.namespaces
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.display()))
                    .collect::<Vec<_>>()
            )
        });
        Ok(Response::new(pb::PodSandboxStatusResponse {
            status: Some(sandbox_status_out(s)),
            info,
            containers_statuses: Vec::new(),
            timestamp: 0,
        }))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<pb::ListPodSandboxRequest>,
    ) -> Result<Response<pb::ListPodSandboxResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let filter = api::PodSandboxFilter {
            id: (!filter.id.is_empty()).then_some(filter.id),
            state: filter.state.map(|s| {
                if s.state == pb::PodSandboxState::SandboxReady as i32 {
                    api::SandboxState::Ready
                } else {
                    api::SandboxState::NotReady
                }
            }),
            labels: filter.label_selector.into_iter().collect(),
        };
        let runtime = self.runtime.clone();
        let items = blocking(move || {
            Ok(owned_sandboxes(runtime.as_ref())?
                .into_iter()
                .filter(|s| filter.matches(s))
                .map(|s| convert::sandbox_out(&shown(s)))
                .collect())
        })
        .await?;
        Ok(Response::new(pb::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        request: Request<pb::CreateContainerRequest>,
    ) -> Result<Response<pb::CreateContainerResponse>, Status> {
        let request = request.into_inner();
        let sandbox_id = required(&request.pod_sandbox_id, "pod_sandbox_id")?.to_owned();
        let config = convert::container_config(
            request
                .config
                .ok_or_else(|| Status::invalid_argument("config: required"))?,
        )?;
        if config.metadata.name.is_empty() {
            return Err(Status::invalid_argument("config.metadata.name: required"));
        }
        if config.image.image.is_empty() {
            return Err(Status::invalid_argument("config.image.image: required"));
        }
        let runtime = self.runtime.clone();
        let id = blocking(move || {
            sandbox(runtime.as_ref(), &sandbox_id)?;
            runtime
                .create_container(&sandbox_id, &config)
                .map_err(status)
        })
        .await?;
        self.events.kick();
        Ok(Response::new(pb::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        request: Request<pb::StartContainerRequest>,
    ) -> Result<Response<pb::StartContainerResponse>, Status> {
        let id = required(&request.get_ref().container_id, "container_id")?.to_owned();
        let runtime = self.runtime.clone();
        blocking(move || {
            let c = container(runtime.as_ref(), &id)?;
            if c.state != api::ContainerState::Created {
                return Err(Status::failed_precondition(format!(
                    "container {id}: StartContainer: it is {:?}, not created",
                    c.state
                )));
            }
            match runtime.start_container(&id).map_err(status)? {
                api::Started::Running { .. } => Ok(()),
                api::Started::Failed { message } => Err(Status::unknown(format!(
                    "container {id}: StartContainer: {message}"
                ))),
            }
        })
        .await?;
        self.events.kick();
        Ok(Response::new(pb::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<pb::StopContainerRequest>,
    ) -> Result<Response<pb::StopContainerResponse>, Status> {
        let request = request.into_inner();
        let id = required(&request.container_id, "container_id")?.to_owned();
        let grace = Duration::from_secs(request.timeout.max(0).unsigned_abs());
        let runtime = self.runtime.clone();
        blocking(move || {
            let Some(c) = if_found(container(runtime.as_ref(), &id))? else {
                return Ok(());
            };
            if c.state != api::ContainerState::Running {
                return Ok(());
            }
            match runtime.stop_container(&id, Some(grace)) {
                Ok(()) | Err(ServiceError::NotRunning { .. }) => {}
                Err(e) => return Err(status(e)),
            }
            wait_stopped(runtime.as_ref(), &id, grace)
        })
        .await?;
        self.events.kick();
        Ok(Response::new(pb::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<pb::RemoveContainerRequest>,
    ) -> Result<Response<pb::RemoveContainerResponse>, Status> {
        let id = required(&request.get_ref().container_id, "container_id")?.to_owned();
        let runtime = self.runtime.clone();
        blocking(move || {
            let Some(c) = if_found(container(runtime.as_ref(), &id))? else {
                return Ok(());
            };
            // containerd removes a running container by killing it first.
            if c.state == api::ContainerState::Running {
                match runtime.stop_container(&id, Some(Duration::ZERO)) {
                    Ok(()) | Err(ServiceError::NotRunning { .. }) => {}
                    Err(e) => return Err(status(e)),
                }
                wait_stopped(runtime.as_ref(), &id, Duration::ZERO)?;
            }
            runtime.remove_container(&id).map_err(status)
        })
        .await?;
        self.events.kick();
        Ok(Response::new(pb::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let runtime = self.runtime.clone();
        let containers = blocking(move || {
            let state = match &filter.state {
                Some(s) => Some(
                    convert::container_state(s.state)
                        .ok_or_else(|| Status::invalid_argument("filter.state: unknown"))?,
                ),
                None => None,
            };
            Ok(owned_containers(
                runtime.as_ref(),
                &filter.id,
                &filter.pod_sandbox_id,
                state,
                &filter.label_selector,
            )?
            .iter()
            .map(convert::container_out)
            .collect())
        })
        .await?;
        Ok(Response::new(pb::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<pb::ContainerStatusRequest>,
    ) -> Result<Response<pb::ContainerStatusResponse>, Status> {
        let request = request.into_inner();
        let id = required(&request.container_id, "container_id")?.to_owned();
        let runtime = self.runtime.clone();
        let c = blocking(move || container(runtime.as_ref(), &id)).await?;
        let info = verbose_info(request.verbose, || {
            format!(
                "{{\"pid\":{},\"sandboxID\":{:?},\"restarts\":{}}}",
                c.pid.unwrap_or(0),
                c.sandbox_id,
                c.restarts
            )
        });
        Ok(Response::new(pb::ContainerStatusResponse {
            status: Some(convert::container_status_out(&c)),
            info,
        }))
    }

    async fn exec_sync(
        &self,
        request: Request<pb::ExecSyncRequest>,
    ) -> Result<Response<pb::ExecSyncResponse>, Status> {
        let request = request.into_inner();
        let id = required(&request.container_id, "container_id")?.to_owned();
        if request.cmd.is_empty() {
            return Err(Status::invalid_argument("cmd: required"));
        }
        // Zero: no limit (a year stands for it).
        let timeout = match request.timeout {
            t if t > 0 => Duration::from_secs(t.unsigned_abs()),
            _ => Duration::from_secs(365 * 24 * 3600),
        };
        let runtime = self.runtime.clone();
        let result = blocking(move || {
            container(runtime.as_ref(), &id)?;
            runtime
                .exec_sync(&id, &request.cmd, timeout)
                .map_err(status)
        })
        .await?;
        Ok(Response::new(pb::ExecSyncResponse {
            stdout: result.stdout,
            stderr: result.stderr,
            exit_code: result.exit_code,
        }))
    }

    async fn exec(
        &self,
        request: Request<pb::ExecRequest>,
    ) -> Result<Response<pb::ExecResponse>, Status> {
        let r = request.into_inner();
        let streams = remote_streams(&r.container_id, r.stdin, r.stdout, r.stderr, r.tty)?;
        if r.cmd.is_empty() {
            return Err(Status::invalid_argument("cmd: required"));
        }
        let (runtime, id) = (self.runtime.clone(), r.container_id.clone());
        blocking(move || running(runtime.as_ref(), &id, "Exec")).await?;
        let url = self.stream_url(
            "Exec",
            crate::streaming::Pending::Exec {
                container_id: r.container_id,
                cmd: r.cmd,
                streams,
            },
        )?;
        Ok(Response::new(pb::ExecResponse { url }))
    }

    async fn attach(
        &self,
        request: Request<pb::AttachRequest>,
    ) -> Result<Response<pb::AttachResponse>, Status> {
        let r = request.into_inner();
        let streams = remote_streams(&r.container_id, r.stdin, r.stdout, r.stderr, r.tty)?;
        let (runtime, id) = (self.runtime.clone(), r.container_id.clone());
        blocking(move || running(runtime.as_ref(), &id, "Attach")).await?;
        let url = self.stream_url(
            "Attach",
            crate::streaming::Pending::Attach {
                container_id: r.container_id,
                streams,
            },
        )?;
        Ok(Response::new(pb::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        request: Request<pb::PortForwardRequest>,
    ) -> Result<Response<pb::PortForwardResponse>, Status> {
        let r = request.into_inner();
        if r.pod_sandbox_id.is_empty() {
            return Err(Status::invalid_argument("missing required pod_sandbox_id"));
        }
        let (runtime, id) = (self.runtime.clone(), r.pod_sandbox_id.clone());
        blocking(move || {
            let s = sandbox(runtime.as_ref(), &id)?;
            if s.sandbox.state != api::SandboxState::Ready {
                return Err(Status::failed_precondition(format!(
                    "sandbox {id}: not ready"
                )));
            }
            Ok(())
        })
        .await?;
        let url = self.stream_url(
            "PortForward",
            crate::streaming::Pending::PortForward {
                sandbox_id: r.pod_sandbox_id,
            },
        )?;
        Ok(Response::new(pb::PortForwardResponse { url }))
    }

    async fn update_container_resources(
        &self,
        request: Request<pb::UpdateContainerResourcesRequest>,
    ) -> Result<Response<pb::UpdateContainerResourcesResponse>, Status> {
        let request = request.into_inner();
        let id = required(&request.container_id, "container_id")?.to_owned();
        let resources = convert::resources(request.linux).ok_or_else(|| {
            Status::invalid_argument("linux: required (no Windows resources here)")
        })?;
        let runtime = self.runtime.clone();
        blocking(move || {
            container(runtime.as_ref(), &id)?;
            runtime
                .update_container_resources(&id, &resources)
                .map_err(status)
        })
        .await?;
        Ok(Response::new(pb::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<pb::ReopenContainerLogRequest>,
    ) -> Result<Response<pb::ReopenContainerLogResponse>, Status> {
        let id = required(&request.get_ref().container_id, "container_id")?.to_owned();
        let runtime = self.runtime.clone();
        blocking(move || {
            container(runtime.as_ref(), &id)?;
            runtime.reopen_container_log(&id).map_err(status)
        })
        .await?;
        Ok(Response::new(pb::ReopenContainerLogResponse {}))
    }

    async fn container_stats(
        &self,
        request: Request<pb::ContainerStatsRequest>,
    ) -> Result<Response<pb::ContainerStatsResponse>, Status> {
        let id = required(&request.get_ref().container_id, "container_id")?.to_owned();
        let runtime = self.runtime.clone();
        let stats = blocking(move || {
            let c = container(runtime.as_ref(), &id)?;
            container_stats(runtime.as_ref(), &c)
        })
        .await?;
        Ok(Response::new(pb::ContainerStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_container_stats(
        &self,
        request: Request<pb::ListContainerStatsRequest>,
    ) -> Result<Response<pb::ListContainerStatsResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let runtime = self.runtime.clone();
        let stats = blocking(move || {
            owned_containers(
                runtime.as_ref(),
                &filter.id,
                &filter.pod_sandbox_id,
                Some(api::ContainerState::Running),
                &filter.label_selector,
            )?
            .iter()
            .map(|c| container_stats(runtime.as_ref(), c))
            .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        Ok(Response::new(pb::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<pb::PodSandboxStatsRequest>,
    ) -> Result<Response<pb::PodSandboxStatsResponse>, Status> {
        let id = required(&request.get_ref().pod_sandbox_id, "pod_sandbox_id")?.to_owned();
        let runtime = self.runtime.clone();
        let stats = blocking(move || {
            let s = sandbox(runtime.as_ref(), &id)?;
            sandbox_stats(runtime.as_ref(), shown(s.sandbox))
        })
        .await?;
        Ok(Response::new(pb::PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<pb::ListPodSandboxStatsRequest>,
    ) -> Result<Response<pb::ListPodSandboxStatsResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let runtime = self.runtime.clone();
        let stats = blocking(move || {
            owned_sandboxes(runtime.as_ref())?
                .into_iter()
                .filter(|s| s.state == api::SandboxState::Ready)
                .filter(|s| filter.id.is_empty() || s.id == filter.id)
                .filter(|s| {
                    filter
                        .label_selector
                        .iter()
                        .all(|(k, v)| s.labels.get(k) == Some(v))
                })
                .map(|s| sandbox_stats(runtime.as_ref(), shown(s)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        Ok(Response::new(pb::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        request: Request<pb::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<pb::UpdateRuntimeConfigResponse>, Status> {
        // The pod CIDR kubelet learns from its node object: podrun's pod
        // networks have their own ranges (the CNI config's, or the default
        // network's), as containerd's CNI configs do; it is recorded in the log.
        let cidr = request
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if !cidr.is_empty() {
            tracing::info!(
                "CRI: UpdateRuntimeConfig: pod CIDR {cidr} (the pod network's own range is kept)"
            );
        }
        Ok(Response::new(pb::UpdateRuntimeConfigResponse {}))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let condition = |kind: &str| pb::RuntimeCondition {
            r#type: kind.into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        };
        let runtime = self.runtime.clone();
        let network = blocking(move || Ok(runtime.network_ready())).await?;
        // containerd's reason and wording (internal/cri/server/status.go).
        let network = match network {
            Ok(()) => condition("NetworkReady"),
            Err(e) => pb::RuntimeCondition {
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: format!("Network plugin returns error: {e}"),
                ..condition("NetworkReady")
            },
        };
        let handler = |name: &str| pb::RuntimeHandler {
            name: name.into(),
            features: Some(pb::RuntimeHandlerFeatures {
                recursive_read_only_mounts: true,
                user_namespaces: false,
            }),
        };
        Ok(Response::new(pb::StatusResponse {
            status: Some(pb::RuntimeStatus {
                conditions: vec![condition("RuntimeReady"), network],
            }),
            info: verbose_info(request.into_inner().verbose, || {
                format!("{{\"runtime\":\"podrun {}\"}}", env!("CARGO_PKG_VERSION"))
            }),
            runtime_handlers: vec![handler("")],
            features: Some(pb::RuntimeFeatures {
                supplemental_groups_policy: true,
                user_namespaces_host_network: false,
            }),
        }))
    }

    async fn runtime_config(
        &self,
        _: Request<pb::RuntimeConfigRequest>,
    ) -> Result<Response<pb::RuntimeConfigResponse>, Status> {
        Ok(Response::new(pb::RuntimeConfigResponse {
            linux: Some(pb::LinuxRuntimeConfiguration {
                cgroup_driver: match self.runtime.cgroup_driver() {
                    podrun_runtime::cgroups::CgroupDriver::Cgroupfs => pb::CgroupDriver::Cgroupfs,
                    podrun_runtime::cgroups::CgroupDriver::Systemd => pb::CgroupDriver::Systemd,
                } as i32,
            }),
        }))
    }

    async fn get_container_events(
        &self,
        _: Request<pb::GetEventsRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::ContainerEventResponse>>, Status> {
        use tokio_stream::StreamExt;
        let runtime = self.runtime.clone();
        let rx = self
            .events
            .subscribe(Arc::new(move || snapshot(runtime.as_ref())))
            .await?;
        let stream = tokio_stream::wrappers::BroadcastStream::new(rx).map(|item| {
            item.map_err(|e| {
                // The client fell behind: it is told, and the stream ends (kubelet
                // then relists, as it does when the stream breaks).
                Status::data_loss(format!("GetContainerEvents: {e}: relist"))
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn checkpoint_container(
        &self,
        _: Request<pb::CheckpointContainerRequest>,
    ) -> Result<Response<pb::CheckpointContainerResponse>, Status> {
        unimplemented(
            "CheckpointContainer",
            "podrun does not checkpoint containers",
        )
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<pb::ListMetricDescriptorsRequest>,
    ) -> Result<Response<pb::ListMetricDescriptorsResponse>, Status> {
        unimplemented("ListMetricDescriptors", NO_METRICS)
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<pb::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<pb::ListPodSandboxMetricsResponse>, Status> {
        unimplemented("ListPodSandboxMetrics", NO_METRICS)
    }

    async fn update_pod_sandbox_resources(
        &self,
        _: Request<pb::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<pb::UpdatePodSandboxResourcesResponse>, Status> {
        unimplemented(
            "UpdatePodSandboxResources",
            "podrun cannot change a running pod's resources yet",
        )
    }
}

fn u64_value(v: Option<u64>) -> Option<pb::UInt64Value> {
    v.map(|value| pb::UInt64Value { value })
}

fn cpu_out(t: i64, u: &podrun_runtime::stats::Usage) -> pb::CpuUsage {
    pb::CpuUsage {
        timestamp: t,
        usage_core_nano_seconds: u64_value(u.cpu_ns),
        usage_nano_cores: None,
        psi: None,
    }
}

fn memory_out(t: i64, u: &podrun_runtime::stats::Usage) -> pb::MemoryUsage {
    pb::MemoryUsage {
        timestamp: t,
        working_set_bytes: u64_value(u.working_set_bytes),
        available_bytes: None,
        usage_bytes: u64_value(u.memory_bytes),
        rss_bytes: u64_value(u.rss_bytes),
        page_faults: u64_value(u.page_faults),
        major_page_faults: u64_value(u.major_page_faults),
        psi: None,
    }
}

/// ContainerStats of container `c`, with the attributes kubelet matches by.
fn container_stats(
    runtime: &dyn RuntimeService,
    c: &api::ContainerStatus,
) -> Result<pb::ContainerStats, Status> {
    let s = runtime.container_stats(&c.id).map_err(status)?;
    let t = s.timestamp_ns;
    let listed = convert::container_out(c);
    Ok(pb::ContainerStats {
        attributes: Some(pb::ContainerAttributes {
            id: c.id.clone(),
            metadata: listed.metadata,
            labels: listed.labels,
            annotations: listed.annotations,
        }),
        cpu: Some(cpu_out(t, &s.usage)),
        memory: Some(memory_out(t, &s.usage)),
        writable_layer: s
            .writable_layer
            .map(|(dir, bytes, inodes)| pb::FilesystemUsage {
                timestamp: t,
                fs_id: Some(pb::FilesystemIdentifier {
                    mountpoint: dir.to_string_lossy().into_owned(),
                }),
                used_bytes: Some(pb::UInt64Value { value: bytes }),
                inodes_used: Some(pb::UInt64Value { value: inodes }),
            }),
        swap: None,
        io: None,
    })
}

/// PodSandboxStats of sandbox `s`, its running containers' included.
fn sandbox_stats(
    runtime: &dyn RuntimeService,
    s: api::PodSandbox,
) -> Result<pb::PodSandboxStats, Status> {
    let stats = runtime.pod_sandbox_stats(&s.id).map_err(status)?;
    let t = stats.timestamp_ns;
    let containers = runtime
        .list_containers(&api::ContainerFilter {
            sandbox_id: Some(s.id.clone()),
            state: Some(api::ContainerState::Running),
            ..Default::default()
        })
        .map_err(status)?
        .iter()
        .map(|c| container_stats(runtime, c))
        .collect::<Result<Vec<_>, _>>()?;
    let listed = convert::sandbox_out(&s);
    Ok(pb::PodSandboxStats {
        attributes: Some(pb::PodSandboxAttributes {
            id: s.id.clone(),
            metadata: listed.metadata,
            labels: listed.labels,
            annotations: listed.annotations,
        }),
        linux: Some(pb::LinuxPodSandboxStats {
            cpu: Some(cpu_out(t, &stats.usage)),
            memory: Some(memory_out(t, &stats.usage)),
            network: None,
            process: None,
            containers,
            io: None,
        }),
        windows: None,
    })
}

/// AuthConfig to the runtime's credentials: a user and password, or the
/// `auth` field (base64 of `user:password`, as docker's config holds it).
fn auth(a: pb::AuthConfig) -> Result<Option<api::AuthConfig>, Status> {
    if !a.identity_token.is_empty() || !a.registry_token.is_empty() {
        return Err(Status::invalid_argument(
            "auth: identity and registry tokens are not supported; send a username and password",
        ));
    }
    if !a.username.is_empty() || !a.password.is_empty() {
        return Ok(Some(api::AuthConfig {
            username: a.username,
            password: a.password,
        }));
    }
    if a.auth.is_empty() {
        return Ok(None);
    }
    let decoded =
        decode_base64(&a.auth).ok_or_else(|| Status::invalid_argument("auth.auth: not base64"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| Status::invalid_argument("auth.auth: not user:password"))?;
    Ok(Some(api::AuthConfig {
        username: user.into(),
        password: password.into(),
    }))
}

/// Standard base64 (with or without padding) to text.
fn decode_base64(s: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim_end_matches('='))
        .or_else(|_| {
            base64::engine::general_purpose::STANDARD_NO_PAD.decode(s.trim_end_matches('='))
        })
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[tonic::async_trait]
impl PbImageService for Cri {
    async fn list_images(
        &self,
        request: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        let filter = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .filter(|i| !i.image.is_empty())
            .map(|i| convert::image_spec(Some(i)));
        let wanted = filter.as_ref().map(|f| f.image.clone());
        let images = self.images.clone();
        let list = blocking(move || {
            images
                .list_images(filter.as_ref())
                .map_err(image_status_error)
        })
        .await?;
        let mut images: Vec<pb::Image> = list.iter().map(convert::image_out).collect();
        let pause = match &wanted {
            Some(name) => self.sandbox_image_named(name),
            None => self.sandbox_image_named(&self.sandbox_image),
        };
        images.extend(
            pause.filter(|p| !images.iter().any(|i| i.repo_tags.contains(&p.repo_tags[0]))),
        );
        Ok(Response::new(pb::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        request: Request<pb::ImageStatusRequest>,
    ) -> Result<Response<pb::ImageStatusResponse>, Status> {
        let request = request.into_inner();
        let spec = convert::image_spec(request.image);
        if spec.image.is_empty() {
            return Err(Status::invalid_argument("image.image: required"));
        }
        let name = spec.image.clone();
        let images = self.images.clone();
        let found =
            blocking(move || images.image_status(&spec).map_err(image_status_error)).await?;
        let image = match &found {
            Some(i) => Some(convert::image_out(i)),
            None => self.sandbox_image_named(&name),
        };
        let info = match &image {
            Some(i) => verbose_info(request.verbose, || format!("{{\"id\":{:?}}}", i.id)),
            None => HashMap::new(),
        };
        Ok(Response::new(pb::ImageStatusResponse { image, info }))
    }

    async fn pull_image(
        &self,
        request: Request<pb::PullImageRequest>,
    ) -> Result<Response<pb::PullImageResponse>, Status> {
        let request = request.into_inner();
        let spec = convert::image_spec(request.image);
        if spec.image.is_empty() {
            return Err(Status::invalid_argument("image.image: required"));
        }
        if let Some(pause) = self.sandbox_image_named(&spec.image) {
            // Never pulled: sandboxes run podrun's own pause process.
            return Ok(Response::new(pb::PullImageResponse {
                image_ref: pause.id,
            }));
        }
        let credentials = match request.auth {
            Some(a) => auth(a)?,
            None => None,
        };
        let images = self.images.clone();
        let image_ref = blocking(move || {
            images
                .pull_image(&spec, credentials.as_ref())
                .map_err(image_status_error)
        })
        .await?;
        Ok(Response::new(pb::PullImageResponse { image_ref }))
    }

    async fn remove_image(
        &self,
        request: Request<pb::RemoveImageRequest>,
    ) -> Result<Response<pb::RemoveImageResponse>, Status> {
        let spec = convert::image_spec(request.into_inner().image);
        if spec.image.is_empty() {
            return Err(Status::invalid_argument("image.image: required"));
        }
        if self.sandbox_image_named(&spec.image).is_some() {
            // Pinned, and nothing stored: as containerd keeps its sandbox image.
            return Ok(Response::new(pb::RemoveImageResponse {}));
        }
        let images = self.images.clone();
        blocking(move || images.remove_image(&spec).map_err(image_status_error)).await?;
        Ok(Response::new(pb::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _: Request<pb::ImageFsInfoRequest>,
    ) -> Result<Response<pb::ImageFsInfoResponse>, Status> {
        let dir = self.image_fs.clone();
        let usage = blocking(move || Ok(fs_usage(&dir))).await?;
        Ok(Response::new(pb::ImageFsInfoResponse {
            image_filesystems: vec![usage.clone()],
            container_filesystems: vec![usage],
        }))
    }
}

/// What the files under `dir` use (bytes, inodes), as ImageFsInfo reports it.
fn fs_usage(dir: &std::path::Path) -> pb::FilesystemUsage {
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            inodes += 1;
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                use std::os::unix::fs::MetadataExt;
                bytes += meta.blocks() * 512;
            }
        }
    }
    pb::FilesystemUsage {
        timestamp: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
        fs_id: Some(pb::FilesystemIdentifier {
            mountpoint: dir.to_string_lossy().into_owned(),
        }),
        used_bytes: Some(pb::UInt64Value { value: bytes }),
        inodes_used: Some(pb::UInt64Value { value: inodes }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_style_auth_is_user_and_password() {
        let a = auth(pb::AuthConfig {
            auth: "dXNlcjpwYXNzOndvcmQ=".into(), // user:pass:word
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str()),
            ("user", "pass:word")
        );
        assert!(auth(pb::AuthConfig {
            identity_token: "t".into(),
            ..Default::default()
        })
        .is_err());
        assert_eq!(auth(pb::AuthConfig::default()).unwrap(), None);
    }

    #[test]
    fn runtime_errors_keep_containerds_codes() {
        assert_eq!(
            status(ServiceError::SandboxNotFound("x".into())).code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            status(ServiceError::Exists {
                call: "RunPodSandbox",
                what: "x".into()
            })
            .code(),
            tonic::Code::AlreadyExists
        );
        assert_eq!(
            status(ServiceError::NotRunning {
                call: "CreateContainer",
                what: "x".into()
            })
            .code(),
            tonic::Code::FailedPrecondition
        );
    }
}
