//! [`NodeImages`]: the [`ImageService`] of this machine, over the image
//! store of `podrun-image`.
//!
//! Pulls run on an executor of their own. A caller (a pod worker on a
//! bounded blocking pool, a CRI request) waits for its pull; the pull itself
//! needs blocking threads to unpack its layers. Were it run on the caller's
//! pool, a burst of pods whose image is missing would fill the pool with
//! callers waiting for pulls that can never get a thread (the deadlock of 20
//! pods applied at once to a fresh store). So the pulls get a runtime of
//! their own, and one pull of an image serves every caller that asked for it
//! while it ran (kubelet's puller, too, pulls an image once for many pods).

use crate::api::{AuthConfig, Image, ImageService};
use crate::ImageSpec;
use podrun_image::registries::RegistriesConfig;
use podrun_image::{ImageRecord, Images, PullOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Why an ImageService call failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageServiceError {
    /// The store or the registry said no (the message names the image).
    #[error(transparent)]
    Image(#[from] podrun_image::ImageError),
    /// The registries' configuration is bad (the message names the file).
    #[error(transparent)]
    Registries(#[from] podrun_image::registries::ConfigError),
    /// A pull failed; every caller waiting on it gets the same message.
    #[error("{0}")]
    Pull(String),
    /// The credentials given with a pull could not be handed to it.
    #[error("pull {image}: credentials: {cause}")]
    Auth {
        /// The image.
        image: String,
        /// What went wrong.
        cause: String,
    },
}

/// The images of this machine.
pub struct NodeImages {
    images: Images,
    registries: RegistriesConfig,
    puller: Puller,
}

impl NodeImages {
    /// The service over the store under `root`, pulling with the mirrors and
    /// rules of podman's `registries_conf` and containerd's `hosts_dir` as
    /// they are now (a change takes a restart, as containerd's configuration
    /// does): a bad file is an error naming it.
    pub fn open(
        root: &std::path::Path,
        registries_conf: &std::path::Path,
        hosts_dir: &std::path::Path,
    ) -> Result<Self, ImageServiceError> {
        let mut registries = RegistriesConfig::load(registries_conf)?;
        registries.add_hosts_dir(hosts_dir)?;
        Ok(Self::new(open_store(root)?, registries))
    }

    /// The service over `images`, pulling with `registries`' mirrors and rules.
    pub fn new(images: Images, registries: RegistriesConfig) -> Self {
        NodeImages {
            images,
            registries,
            puller: Puller::new(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Images {
        &self.images
    }

    fn found(&self, name: &str) -> Result<Option<ImageRecord>, ImageServiceError> {
        match self.images.get(name) {
            Ok(record) => Ok(Some(record)),
            Err(podrun_image::ImageError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn image(&self, record: &ImageRecord) -> Result<Image, ImageServiceError> {
        let names = self
            .images
            .list()?
            .into_iter()
            .filter(|r| r.id == record.id)
            .collect::<Vec<_>>();
        let config = self.images.run_config(&record.name)?;
        let (uid, username) = image_user(config["User"].as_str().unwrap_or_default());
        Ok(Image {
            uid,
            username,
            id: record.id.to_string(),
            repo_tags: names
                .iter()
                .filter(|r| !r.name.contains('@'))
                .map(|r| r.name.clone())
                .collect(),
            repo_digests: names.iter().map(ImageRecord::repo_digest).collect(),
            // containerd reports an image's size as its content, compressed.
            size: record.layers.iter().map(|l| l.size).sum(),
        })
    }
}

impl ImageService for NodeImages {
    fn pull_image(
        &self,
        image: &ImageSpec,
        auth: Option<&AuthConfig>,
    ) -> Result<String, ImageServiceError> {
        let name = image.image.as_str();
        let mut options = PullOptions {
            registries: self.registries.clone(),
            ..Default::default()
        };
        // Credentials given with the pull go to it in a file of their own,
        // the only file it reads (kubelet's pull secrets replace the node's).
        let auth_dir = match auth {
            Some(auth) => {
                let auth_err = |cause: String| ImageServiceError::Auth {
                    image: name.into(),
                    cause,
                };
                let reference =
                    podrun_image::reference::parse(name).map_err(podrun_image::ImageError::from)?;
                let dir = tempfile::tempdir().map_err(|e| auth_err(e.to_string()))?;
                let file = dir.path().join("auth.json");
                let creds = podrun_image::auth::Credentials {
                    username: auth.username.clone(),
                    password: auth.password.clone(),
                };
                podrun_image::auth::store(&file, reference.registry(), &creds)
                    .map_err(|e| auth_err(e.to_string()))?;
                options.auth_files = Some(vec![file]);
                Some(dir)
            }
            None => None,
        };
        self.puller
            .pull_blocking(&self.images, name, options)
            .map_err(ImageServiceError::Pull)?;
        drop(auth_dir);
        Ok(self.images.get(name)?.id.to_string())
    }

    fn image_status(&self, image: &ImageSpec) -> Result<Option<Image>, ImageServiceError> {
        self.found(&image.image)?
            .map(|r| self.image(&r))
            .transpose()
    }

    fn remove_image(&self, image: &ImageSpec) -> Result<(), ImageServiceError> {
        match self.images.remove(&image.image, true) {
            Ok(_) | Err(podrun_image::ImageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn collect_images(
        &self,
        policy: &podrun_image::gc::Policy,
        bytes_to_free: u64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<podrun_image::gc::Outcome<podrun_image::ImageError>, ImageServiceError> {
        Ok(self.images.collect_images(policy, bytes_to_free, now)?)
    }

    fn list_images(&self, filter: Option<&ImageSpec>) -> Result<Vec<Image>, ImageServiceError> {
        let records = match filter.filter(|f| !f.image.is_empty()) {
            Some(f) => self.found(&f.image)?.into_iter().collect(),
            None => self.images.list()?,
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for r in records {
            if seen.insert(r.id.to_string()) {
                out.push(self.image(&r)?);
            }
        }
        Ok(out)
    }
}

/// An image config's `User` as ImageStatus reports it (containerd's
/// getUserFromImage): the user part, as a uid when numeric, else as a name.
pub fn image_user(user: &str) -> (Option<i64>, String) {
    let user = user.split_once(':').map_or(user, |(u, _)| u);
    match user.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, user.to_string()),
    }
}

/// The image store under `root`.
pub(crate) fn open_store(root: &std::path::Path) -> Result<Images, ImageServiceError> {
    Ok(Images::open(root)?)
}

/// The result of a pull, as every waiter gets it.
type PullResult = Result<(), String>;

/// The last pull of one image: when it ended, and how.
type Flight = Arc<tokio::sync::Mutex<Option<(Instant, PullResult)>>>;

/// Pulls, one at a time per image, on their own runtime.
struct Puller {
    runtime: OnceLock<tokio::runtime::Runtime>,
    flights: Mutex<HashMap<String, Flight>>,
}

impl Puller {
    fn new() -> Self {
        Puller {
            runtime: OnceLock::new(),
            flights: Mutex::new(HashMap::new()),
        }
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                // Layers of one pull unpack side by side; a few pulls at once.
                .max_blocking_threads(8)
                .thread_keep_alive(Duration::from_secs(2))
                .thread_name("podrun-pull")
                .enable_all()
                .build()
                .expect("start the pull runtime")
        })
    }

    /// Pull `image` and wait for it (blocking: call it from a thread that may
    /// block, never from an async task). A pull of the same image that ends
    /// after this call began answers it too, success or failure: so many pods
    /// asking at once cause one pull.
    fn pull_blocking(&self, images: &Images, image: &str, options: PullOptions) -> PullResult {
        let asked = Instant::now();
        let flight = self.flight(image);
        let (images, image) = (images.clone(), image.to_string());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime().spawn(async move {
            let result = pull_once(&flight, asked, || async {
                images
                    .pull(&image, &options)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await;
            let _ = tx.send(result);
        });
        rx.recv()
            .unwrap_or_else(|_| Err("the pull ended without an answer".into()))
    }

    fn flight(&self, image: &str) -> Flight {
        self.flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(image.to_string())
            .or_default()
            .clone()
    }
}

impl Drop for Puller {
    fn drop(&mut self) {
        // Dropping a runtime blocks on its tasks: not from an async context.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Run `pull` unless a pull that ended after `asked` already answered; one
/// at a time per `flight`.
async fn pull_once<F, Fut>(flight: &Flight, asked: Instant, pull: F) -> PullResult
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = PullResult>,
{
    let mut last = flight.lock().await;
    if let Some((ended, result)) = &*last {
        if *ended >= asked {
            return result.clone();
        }
    }
    let result = pull().await;
    *last = Some((Instant::now(), result.clone()));
    result
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_image_user_is_a_uid_when_numeric_as_containerd_reads_it() {
        let user = |u: &str| image_user(u);
        assert_eq!(user(""), (None, String::new()));
        assert_eq!(user("1000"), (Some(1000), String::new()));
        assert_eq!(user("0:0"), (Some(0), String::new()));
        assert_eq!(user("nobody"), (None, "nobody".into()));
        assert_eq!(user("app:staff"), (None, "app".into()));
        assert_eq!(user("1000:staff"), (Some(1000), String::new()));
    }

    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_waiting_on_one_pull_share_its_result() {
        let flight: Flight = Arc::default();
        let pulls = Arc::new(AtomicUsize::new(0));
        let asked = Instant::now();
        let mut waiters = Vec::new();
        for _ in 0..10 {
            let (flight, pulls) = (flight.clone(), pulls.clone());
            waiters.push(tokio::spawn(async move {
                pull_once(&flight, asked, || async {
                    pulls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err::<(), _>("manifest unknown".to_string())
                })
                .await
            }));
        }
        for w in waiters {
            assert_eq!(w.await.unwrap(), Err("manifest unknown".to_string()));
        }
        assert_eq!(pulls.load(Ordering::SeqCst), 1);
        // Asked after that pull ended: a new pull.
        let again = pull_once(&flight, Instant::now(), || async { Ok(()) }).await;
        assert_eq!(again, Ok(()));
    }

    #[test]
    fn an_image_not_here_has_no_status_and_removing_it_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let images = NodeImages::new(
            Images::open(dir.path()).unwrap(),
            RegistriesConfig::default(),
        );
        let spec = ImageSpec {
            image: "127.0.0.1:5000/nothing:here".into(),
            ..Default::default()
        };
        assert_eq!(images.image_status(&spec).unwrap(), None);
        images.remove_image(&spec).unwrap();
        assert!(images.list_images(None).unwrap().is_empty());
        assert!(images.list_images(Some(&spec)).unwrap().is_empty());
    }
}
