//! The image commands: pull, images, rmi, image inspect, image prune, load,
//! login, logout.

use crate::Cli;
use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use podrun_image::platform::Platform;
use podrun_image::registries::RegistriesConfig;
use podrun_image::{auth, Digest, ImageRecord, Images, Progress, PullOptions};
use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(clap::Args)]
pub struct PullArgs {
    /// Image reference (`busybox`, `registry:5000/app:1`, `app@sha256:…`).
    image: String,
    /// Platform to choose from a multi-platform image (default: this machine).
    #[arg(long)]
    platform: Option<Platform>,
    /// Print only the image ID.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Print only image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Show full image IDs.
    #[arg(long)]
    no_trunc: bool,
    /// Show manifest digests.
    #[arg(long)]
    digests: bool,
}

#[derive(clap::Args)]
pub struct RemoveArgs {
    /// Image names or IDs.
    #[arg(required = true)]
    images: Vec<String>,
    /// Remove every name of an image given by ID.
    #[arg(short, long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Remove every image no container uses, however recently it was pulled.
    #[arg(short, long)]
    all: bool,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Image names or IDs.
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(clap::Args)]
pub struct LoadArgs {
    /// The archive (OCI archive or `docker save` tarball).
    #[arg(short, long)]
    input: PathBuf,
    /// Platform to choose from a multi-platform archive.
    #[arg(long)]
    platform: Option<Platform>,
}

#[derive(clap::Args)]
pub struct LoginArgs {
    /// Registry host (`127.0.0.1:5000`, `quay.io`; `docker.io` for Docker Hub).
    registry: String,
    /// User name.
    #[arg(short, long)]
    username: String,
    /// Password (prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Credentials file (default: $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json).
    #[arg(long)]
    authfile: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    /// Registry host.
    registry: String,
    /// Credentials file.
    #[arg(long)]
    authfile: Option<PathBuf>,
}

fn open(cli: &Cli) -> Result<Images> {
    Ok(Images::open(&cli.root)?)
}

/// The registries' configuration of the global flags.
pub fn registries(cli: &Cli) -> Result<RegistriesConfig> {
    let mut config = RegistriesConfig::load(&cli.registries_conf)?;
    config.add_hosts_dir(&cli.hosts_dir)?;
    Ok(config)
}

pub async fn pull(cli: &Cli, args: &PullArgs) -> Result<()> {
    let images = open(cli)?;
    let bars = (!args.quiet && std::io::stderr().is_terminal()).then(Bars::new);
    let options = PullOptions {
        platform: args.platform.clone(),
        registries: registries(cli)?,
        progress: bars.as_ref().map(|b| b.callback()),
        ..Default::default()
    };
    let record = images.pull(&args.image, &options).await?;
    if let Some(b) = bars {
        b.finish();
    }
    println!("{}", record.id.hex());
    Ok(())
}

/// One progress bar per layer, as docker and podman draw them.
struct Bars {
    multi: MultiProgress,
    bars: Arc<Mutex<HashMap<Digest, ProgressBar>>>,
}

impl Bars {
    fn new() -> Self {
        Self {
            multi: MultiProgress::new(),
            bars: Arc::default(),
        }
    }

    fn callback(&self) -> podrun_image::pull::ProgressFn {
        let multi = self.multi.clone();
        let bars = self.bars.clone();
        let style =
            ProgressStyle::with_template("{prefix} {msg:<12} [{bar:30}] {bytes}/{total_bytes}")
                .expect("valid template")
                .progress_chars("=> ");
        Arc::new(move |p| {
            let mut bars = bars.lock().expect("progress lock");
            match p {
                Progress::Resolved { layers } => {
                    for (d, size) in layers {
                        let bar = multi.add(ProgressBar::new(size));
                        bar.set_style(style.clone());
                        bar.set_prefix(d.short().to_string());
                        bar.set_message("waiting");
                        bars.insert(d, bar);
                    }
                }
                Progress::LayerExists(d) => {
                    if let Some(b) = bars.get(&d) {
                        b.set_message("exists");
                        b.set_position(b.length().unwrap_or(0));
                        b.finish();
                    }
                }
                Progress::LayerBytes(d, n) => {
                    if let Some(b) = bars.get(&d) {
                        b.set_message("downloading");
                        b.set_position(n);
                    }
                }
                Progress::LayerDone(d) => {
                    if let Some(b) = bars.get(&d) {
                        b.set_message("done");
                        b.finish();
                    }
                }
            }
        })
    }

    fn finish(self) {
        let _ = self.multi.clear();
    }
}

pub fn list(cli: &Cli, args: &ListArgs) -> Result<()> {
    let images = open(cli)?;
    let records = images.list()?;
    let mut out = std::io::stdout().lock();
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &records {
            if seen.insert(r.id.clone()) {
                writeln!(out, "{}", id(r, args.no_trunc))?;
            }
        }
        return Ok(());
    }
    let now = chrono::Utc::now();
    let mut rows = vec![{
        let mut h = vec!["REPOSITORY", "TAG"];
        if args.digests {
            h.push("DIGEST");
        }
        h.extend(["IMAGE ID", "CREATED", "SIZE"]);
        h.into_iter().map(String::from).collect::<Vec<_>>()
    }];
    for r in &records {
        let (repo, tag) = r.repository_and_tag();
        let mut row = vec![repo, tag];
        if args.digests {
            row.push(
                r.index_digest
                    .as_ref()
                    .unwrap_or(&r.manifest_digest)
                    .to_string(),
            );
        }
        row.push(id(r, args.no_trunc));
        row.push(ago(r.created.as_deref(), now));
        row.push(human_size(r.size()));
        rows.push(row);
    }
    podrun_agent::table::write(&mut out, &rows)?;
    Ok(())
}

fn id(r: &ImageRecord, full: bool) -> String {
    if full {
        r.id.to_string()
    } else {
        r.id.short().to_string()
    }
}

/// `2 days ago`, as docker words it.
fn ago(created: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> String {
    let Some(t) = created.and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()) else {
        return "N/A".into();
    };
    let secs = (now - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
    let (n, unit) = match secs {
        s if s < 60 => return "Less than a minute ago".into(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86400 => (s / 3600, "hour"),
        s if s < 86400 * 14 => (s / 86400, "day"),
        s if s < 86400 * 60 => (s / (86400 * 7), "week"),
        s if s < 86400 * 365 * 2 => (s / (86400 * 30), "month"),
        s => (s / (86400 * 365), "year"),
    };
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

/// Sizes in decimal units, as docker prints them (`4.26MB`).
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[u]
    }
}

pub fn remove(cli: &Cli, args: &RemoveArgs) -> Result<()> {
    let images = open(cli)?;
    if let [name] = args.images.as_slice() {
        for n in images.remove(name, args.force)?.names {
            println!("Untagged: {n}");
        }
        return Ok(());
    }
    let mut failed = 0;
    for name in &args.images {
        match images.remove(name, args.force) {
            Ok(removed) => {
                for n in removed.names {
                    println!("Untagged: {n}");
                }
            }
            Err(e) => {
                eprintln!("Error: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} images not removed", args.images.len());
    }
    Ok(())
}

/// `podrun image prune [-a]`: kubelet's image garbage collection by hand,
/// with nothing to reach but everything unused. Without `-a` an image pulled
/// less than `image_minimum_gc_age` (kubelet's imageMinimumGCAge) ago stays,
/// as the agent's collection keeps it: it may be about to be used. With
/// `-a` every image no container uses goes (crictl rmi --prune). Each name
/// removed prints `Deleted: NAME` (crictl's line) and then the bytes it gave
/// back (docker's `Total reclaimed space:` line).
pub fn prune(cli: &Cli, args: &PruneArgs) -> Result<()> {
    let images = open(cli)?;
    let gc = podrun_agent::config::Config::load(&cli.config)?.image_gc(&cli.config)?;
    let policy = podrun_image::gc::Policy {
        min_age: if args.all {
            std::time::Duration::ZERO
        } else {
            gc.policy.min_age
        },
        max_age: None,
    };
    let outcome = images.collect_images(&policy, u64::MAX, chrono::Utc::now())?;
    for freed in &outcome.removed {
        for name in &freed.names {
            println!("Deleted: {name}");
        }
    }
    println!(
        "Total reclaimed space: {}",
        human_size(outcome.total_bytes())
    );
    for e in &outcome.errors {
        eprintln!("Error: {e}");
    }
    if !outcome.errors.is_empty() {
        bail!("{} images could not be removed", outcome.errors.len());
    }
    Ok(())
}

pub fn inspect(cli: &Cli, args: &InspectArgs) -> Result<()> {
    let images = open(cli)?;
    let all = args
        .images
        .iter()
        .map(|n| images.inspect(n))
        .collect::<Result<Vec<_>, _>>()?;
    println!("{}", serde_json::to_string_pretty(&all)?);
    Ok(())
}

pub async fn load(cli: &Cli, args: &LoadArgs) -> Result<()> {
    let images = open(cli)?;
    for r in images.load(&args.input, args.platform.clone()).await? {
        println!("Loaded image: {}", r.name);
    }
    Ok(())
}

pub async fn login(cli: &Cli, args: &LoginArgs) -> Result<()> {
    let password = match (&args.password, args.password_stdin) {
        (Some(p), _) => p.clone(),
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("read password from stdin")?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!(
            "login {}: give --password-stdin (or --password)",
            args.registry
        ),
    };
    let creds = auth::Credentials {
        username: args.username.clone(),
        password,
    };
    let probe = podrun_image::reference::parse(&format!("{}/podrun/login", args.registry))
        .with_context(|| format!("login {}", args.registry))?;
    let endpoint = registries(cli)?
        .endpoints(&probe)?
        .pop()
        .expect("the registry itself is always an endpoint");
    podrun_image::registry::check_login(
        &args.registry,
        endpoint.insecure,
        &creds,
        &Default::default(),
    )
    .await?;
    let file = args
        .authfile
        .clone()
        .unwrap_or_else(auth::default_auth_file);
    auth::store(&file, &args.registry, &creds)?;
    println!("Login Succeeded");
    Ok(())
}

pub fn logout(args: &LogoutArgs) -> Result<()> {
    let file = args
        .authfile
        .clone()
        .unwrap_or_else(auth::default_auth_file);
    if auth::remove(&file, &args.registry)? {
        println!("Removed login credentials for {}", args.registry);
        Ok(())
    } else {
        bail!(
            "logout {}: not logged in (in {})",
            args.registry,
            file.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_like_docker() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(200_000_000), "200MB");
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(ago(Some("2026-11-25T12:00:00Z"), now), "2 days ago");
        assert_eq!(ago(Some("2026-11-27T11:00:00Z"), now), "1 hour ago");
        assert_eq!(ago(None, now), "N/A");
    }
}
