//! `podrun run -f pod.yaml`: one pod in the foreground, without an agent.
//! Parse and validate, pull what is missing, build each container's root
//! filesystem and OCI bundle, hand the pod to its monitor (`podrun __monitor`,
//! a process of its own), stream the containers' logs prefixed by their names,
//! and return the pod's exit code; Ctrl-C stops the pod gracefully.
//!
//! v0 limits, said as errors rather than ignored: no init containers, volumes
//! of type emptyDir and hostPath only, env from literal values only.

use crate::Cli;
use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Container, Pod};
use podrun_image::{Images, PullOptions};
use podrun_oci::{ContainerInput, EnvVar, Host, ImageConfig, Mount, NamespacePaths, UserFiles};
use podrun_runtime::monitor::{read_exits, ContainerPlan, PodPlan};
use podrun_runtime::sandbox::Namespace;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The Pod manifest (YAML or JSON).
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
}

pub async fn run(cli: &Cli, args: &RunArgs) -> Result<i32> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("read {}", args.file.display()))?;
    let source = args.file.display().to_string();
    let objects = podrun_spec::load(&text, &source)?;
    let pods: Vec<Pod> = objects
        .into_iter()
        .filter_map(|o| match o {
            podrun_spec::Object::Pod(p) => Some(p),
            _ => None,
        })
        .collect();
    let [pod] = pods.as_slice() else {
        bail!(
            "{source}: podrun run takes exactly one Pod, found {}",
            pods.len()
        );
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let spec = pod.spec.as_ref().context("pod has no spec")?;
    let fail = |what: String| anyhow::anyhow!("pod/{name}: {what}");
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(fail(
            "init containers are not supported by podrun run yet".into(),
        ));
    }
    let pod_id = format!("{namespace}-{name}-{:08x}", std::process::id());
    let images = Images::open(&cli.root)?;
    let options = PullOptions {
        registries: crate::images::registries(cli)?,
        ..Default::default()
    };
    // One pull per distinct image, however many containers use it.
    let mut seen = std::collections::HashSet::new();
    for c in spec
        .containers
        .iter()
        .filter(|c| seen.insert(c.image.clone()))
    {
        let image = c.image.clone().unwrap_or_default();
        let present = images.get(&image).is_ok();
        let policy = c.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
        if policy == "Always" || (policy == "IfNotPresent" && !present) {
            images
                .pull(&image, &options)
                .await
                .map_err(|e| fail(format!("container {}: {e}", c.name)))?;
        } else if !present {
            return Err(fail(format!(
                "container {}: image {image} is not present and imagePullPolicy is Never",
                c.name
            )));
        }
    }

    let pod_dir = images.root().join("pods").join(&pod_id);
    let run_dir = cli.run_root.join("pods").join(&pod_id);
    let mut plan = PodPlan {
        pod_id: pod_id.clone(),
        run_root: cli.run_root.clone(),
        run_dir: run_dir.clone(),
        pause: sibling("podrun-pause")?,
        crun: "crun".into(),
        hostname: spec.hostname.clone().unwrap_or_else(|| name.clone()),
        host_network: spec.host_network.unwrap_or(false),
        share_pid: spec.share_process_namespace.unwrap_or(false),
        cgroup_parent: Some(format!("/podrun-{pod_id}")),
        containers: Vec::new(),
    };
    let mut guard = Cleanup {
        images: images.clone(),
        containers: Vec::new(),
        dirs: vec![pod_dir.clone(), run_dir.clone()],
    };
    let host = Host::detect().context("read host facts")?;
    for c in &spec.containers {
        let id = format!("{pod_id}-{}", c.name);
        let prepared = prepare(&images, pod, c, &id, &plan, &pod_dir, &host)
            .map_err(|e| fail(format!("container {}: {e:#}", c.name)))?;
        guard.containers.push(id.clone());
        plan.containers.push(ContainerPlan {
            id,
            name: c.name.clone(),
            bundle: prepared.0,
            log_path: run_dir.join("logs").join(format!("{}.log", c.name)),
            stop_signal: prepared.1,
            grace_period_ms: spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64
                * 1000,
        });
    }
    std::fs::create_dir_all(&run_dir)?;
    let plan_file = run_dir.join("plan.json");
    std::fs::write(&plan_file, serde_json::to_vec_pretty(&plan)?)?;

    let mut monitor = tokio::process::Command::new(std::env::current_exe()?)
        .arg("__monitor")
        .arg("--plan")
        .arg(&plan_file)
        .stdin(std::process::Stdio::null())
        .spawn()
        .context("start the pod's monitor")?;
    let mut tails: Vec<Tail> = plan
        .containers
        .iter()
        .map(|c| Tail {
            name: c.name.clone(),
            path: c.log_path.clone(),
            offset: 0,
            partial: Vec::new(),
        })
        .collect();
    let mut stopping = false;
    let status = loop {
        for t in &mut tails {
            t.pump();
        }
        tokio::select! {
            s = monitor.wait() => break s?,
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
            _ = tokio::signal::ctrl_c(), if !stopping => {
                stopping = true;
                eprintln!("podrun: stopping pod/{name}");
                if let Some(pid) = monitor.id() {
                    // SAFETY: kill only sends a signal to our own child.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
            }
        }
    };
    for t in &mut tails {
        t.pump();
    }
    let exits = read_exits(&plan);
    drop(guard);
    if !status.success() {
        bail!("pod/{name}: monitor failed ({status})");
    }
    let code = plan
        .containers
        .iter()
        .filter_map(|c| exits.get(&c.name))
        .map(|e| e.exit_code)
        .find(|c| *c != 0)
        .unwrap_or(0);
    Ok(code)
}

/// A binary installed beside this one.
fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!("{} not found beside {}", name, exe.display());
    }
    Ok(path)
}

/// Root filesystem, mounts and bundle of one container; returns (bundle, stop signal).
fn prepare(
    images: &Images,
    pod: &Pod,
    c: &Container,
    id: &str,
    plan: &PodPlan,
    pod_dir: &Path,
    host: &Host,
) -> Result<(PathBuf, i32)> {
    let image = c.image.clone().unwrap_or_default();
    let cfg = &images.run_config(&image)?;
    let strings = |key: &str| -> Vec<String> {
        cfg[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let image_config = ImageConfig {
        entrypoint: strings("Entrypoint"),
        cmd: strings("Cmd"),
        env: strings("Env"),
        working_dir: cfg["WorkingDir"].as_str().unwrap_or("").into(),
        user: cfg["User"].as_str().unwrap_or("").into(),
        stop_signal: cfg["StopSignal"].as_str().unwrap_or("").into(),
    };
    let mut env = Vec::new();
    for e in c.env.iter().flatten() {
        if e.value_from.is_some() {
            bail!(
                "env {}: valueFrom is not supported by podrun run yet",
                e.name
            );
        }
        env.push(EnvVar::literal(
            e.name.clone(),
            e.value.clone().unwrap_or_default(),
        ));
    }
    let mounts = volume_mounts(pod, c, pod_dir)?;
    let rootfs = images.prepare_rootfs(&image, id)?;
    let users = UserFiles::read(&rootfs)?;
    let spec = pod.spec.as_ref().expect("validated");
    let input = ContainerInput {
        pod,
        container: c,
        image_ref: &image,
        image: &image_config,
        rootfs: &rootfs,
        users: &users,
        hostname: &plan.hostname,
        namespaces: NamespacePaths {
            net: (!plan.host_network).then(|| plan.ns_path(Namespace::Net)),
            ipc: Some(plan.ns_path(Namespace::Ipc)),
            uts: (!plan.host_network).then(|| plan.ns_path(Namespace::Uts)),
            pid: spec
                .share_process_namespace
                .unwrap_or(false)
                .then(|| plan.ns_path(Namespace::Pid)),
        },
        cgroups_path: Some(format!("/podrun-{}/{}", plan.pod_id, c.name).into()),
        mounts,
        env,
        seccomp_localhost_profile: None,
        pids_limit: None,
        oom_score_adj: None,
        sandbox_id: Some(&plan.pod_id),
        honor_image_group: false,
        host,
    };
    let generated = podrun_oci::build(&input)?;
    for w in &generated.warnings {
        eprintln!("podrun: warning: container {}: {w}", c.name);
    }
    let bundle = pod_dir.join("bundles").join(&c.name);
    std::fs::create_dir_all(&bundle)?;
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&generated.spec)?,
    )?;
    Ok((bundle, generated.stop_signal))
}

/// The container's volumeMounts as bind mounts: emptyDir under the pod's
/// directory (shared by its containers), hostPath as it is on the host.
fn volume_mounts(pod: &Pod, c: &Container, pod_dir: &Path) -> Result<Vec<Mount>> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = volumes
            .iter()
            .find(|v| v.name == m.name)
            .expect("validated: the volume exists");
        let mut source = if v.empty_dir.is_some() {
            if v.empty_dir.as_ref().and_then(|e| e.medium.as_deref()) == Some("Memory") {
                bail!(
                    "volume {}: emptyDir medium Memory is not supported by podrun run yet",
                    v.name
                );
            }
            let dir = pod_dir.join("volumes").join(&v.name);
            std::fs::create_dir_all(&dir)?;
            dir
        } else if let Some(h) = &v.host_path {
            let p = PathBuf::from(&h.path);
            match h.type_.as_deref().unwrap_or("") {
                "DirectoryOrCreate" => std::fs::create_dir_all(&p)?,
                _ if !p.exists() => bail!("volume {}: hostPath {} does not exist", v.name, h.path),
                _ => {}
            }
            p
        } else {
            bail!(
                "volume {}: only emptyDir and hostPath are supported by podrun run yet",
                v.name
            );
        };
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            source = source.join(sub);
            std::fs::create_dir_all(&source)?;
        }
        out.push(Mount::bind(
            source,
            m.mount_path.clone(),
            m.read_only.unwrap_or(false),
        ));
    }
    Ok(out)
}

/// Follows one container's CRI log file and prints its lines as `name | line`.
struct Tail {
    name: String,
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl Tail {
    fn pump(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        if f.seek(std::io::SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return;
        }
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            // `<time> <stream> <F|P> <content>`
            let mut parts = text.splitn(4, ' ');
            let (_, stream, tag, content) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next().unwrap_or(""),
            );
            let newline = if tag == Some("P") { "" } else { "\n" };
            let out = format!("{} | {content}{newline}", self.name);
            if stream == Some("stderr") {
                let _ = std::io::stderr().write_all(out.as_bytes());
            } else {
                let _ = std::io::stdout().write_all(out.as_bytes());
            }
        }
    }
}

/// Removes the pod's root filesystems and directories, even on errors.
struct Cleanup {
    images: Images,
    containers: Vec<String>,
    dirs: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in &self.containers {
            if let Err(e) = self.images.remove_rootfs(id) {
                eprintln!("podrun: cleanup: {e}");
            }
        }
        for d in &self.dirs {
            if d.is_absolute() && d.exists() {
                if let Err(e) = std::fs::remove_dir_all(d) {
                    eprintln!("podrun: cleanup: remove {}: {e}", d.display());
                }
            }
        }
    }
}
