//! Image pulls of the pod workers, on an executor of their own.
//!
//! A sync runs on the agent's bounded blocking pool and waits for the image
//! of a container it starts (kubelet's SyncPod waits too). The pull itself
//! needs blocking threads to unpack its layers: were it run on the agent's
//! runtime, a burst of pods whose image is missing would fill the pool with
//! syncs waiting for pulls that can never get a thread (the deadlock of 20
//! pods applied at once to a fresh store). Pulls therefore run on a runtime
//! of their own, and one pull of an image serves every sync that asked for it
//! while it ran (kubelet's puller also pulls an image once for many pods).

use podrun_image::{Images, PullOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The result of a pull, as every waiter gets it.
pub type PullResult = Result<(), String>;

/// The last pull of one image: when it ended, and how.
type Flight = Arc<tokio::sync::Mutex<Option<(Instant, PullResult)>>>;

/// The process's puller.
pub static PULLER: Puller = Puller::new();

/// Pulls, one at a time per image, on their own runtime.
pub struct Puller {
    runtime: OnceLock<tokio::runtime::Runtime>,
    flights: Mutex<Option<HashMap<String, Flight>>>,
}

impl Puller {
    /// A puller; its runtime starts with the first pull.
    pub const fn new() -> Self {
        Puller {
            runtime: OnceLock::new(),
            flights: Mutex::new(None),
        }
    }
}

impl Default for Puller {
    fn default() -> Self {
        Self::new()
    }
}

impl Puller {
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
    pub fn pull_blocking(&self, images: &Images, image: &str, options: PullOptions) -> PullResult {
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
            .get_or_insert_with(HashMap::new)
            .entry(image.to_string())
            .or_default()
            .clone()
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
}
