//! Image garbage collection's decisions: which unused images go, in which
//! order, and when to stop. kubelet's rules (pkg/kubelet/images/
//! image_gc_manager.go, `imagesInEvictionOrder`, `freeOldImages`,
//! `freeSpace`), as pure functions of the images, the policy and the clock;
//! [`crate::Images::collect_images`] carries them out on the store.
//!
//! An image here is an image ID with every name that points to it: kubelet
//! removes an image by ID (CRI RemoveImage takes all its tags with it).

use crate::digest::Digest;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The ages of kubelet's image garbage collection policy
/// (`imageMinimumGCAge`, `imageMaximumGCAge`); the thresholds belong to
/// whoever measures the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// An image pulled less than this long ago is never removed to free
    /// space: it may have been pulled for a container about to start.
    pub min_age: Duration,
    /// An unused image whose last use is longer ago than this is removed
    /// whatever the disk usage; `None` turns that off (kubelet's `0s`).
    pub max_age: Option<Duration>,
}

/// One image as garbage collection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The image ID.
    pub id: Digest,
    /// Every name pointing to it, sorted.
    pub names: Vec<String>,
    /// When it was pulled (kubelet's `firstDetected`): the latest pull of
    /// any of its names, so a name pulled just now protects the ID.
    pub pulled_at: DateTime<Utc>,
    /// When a container last had a root filesystem made from it or
    /// removed (kubelet's `lastUsed`); `None` if never.
    pub last_used: Option<DateTime<Utc>>,
    /// Whether a container (running or not) uses it now.
    pub in_use: bool,
}

/// The images that may be removed at all, in kubelet's eviction order: the
/// unused ones, least recently used first (never used before any used
/// one), ties broken by pull time, then by ID so the order is total.
pub fn eviction_order(images: Vec<Candidate>) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = images.into_iter().filter(|c| !c.in_use).collect();
    out.sort_by(|a, b| (a.last_used, a.pulled_at, &a.id).cmp(&(b.last_used, b.pulled_at, &b.id)));
    out
}

/// Whether freeing space may remove `image` at `now`: not used at or after
/// `now` (kubelet's "used too recently") and pulled at least `min_age` ago.
pub fn may_free(image: &Candidate, now: DateTime<Utc>, min_age: Duration) -> bool {
    if image.in_use || image.last_used.is_some_and(|t| t >= now) {
        return false;
    }
    age(now, image.pulled_at) >= min_age
}

/// Whether `image` is past the policy's maximum age at `now`: unused, and
/// its last use (its pull, if it was never used) longer ago than `max_age`.
pub fn too_old(image: &Candidate, now: DateTime<Utc>, policy: &Policy) -> bool {
    let Some(max_age) = policy.max_age else {
        return false;
    };
    let since = image.last_used.unwrap_or(image.pulled_at);
    !image.in_use && age(now, since) > max_age
}

/// How long before `now` `t` was (zero for a time in the future).
fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or(Duration::ZERO)
}

/// What one removal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freed {
    /// The image ID.
    pub id: Digest,
    /// The names removed with it.
    pub names: Vec<String>,
    /// The bytes of blobs and snapshots its removal deleted (layers another
    /// image still uses stay and count nothing).
    pub bytes: u64,
    /// Whether it went for its age (`imageMaximumGCAge`) rather than for space.
    pub for_age: bool,
}

/// What a collection did, and what it could not do.
#[derive(Debug)]
pub struct Outcome<E> {
    /// The images removed, in the order they went.
    pub removed: Vec<Freed>,
    /// The bytes freed to reach the target (images removed for their age
    /// count in [`Outcome::removed`] only, as kubelet measures the disk
    /// after removing them).
    pub freed: u64,
    /// Removals that failed; the collection went on past them.
    pub errors: Vec<E>,
}

impl<E> Outcome<E> {
    /// Every byte the removals deleted.
    pub fn total_bytes(&self) -> u64 {
        self.removed.iter().map(|f| f.bytes).sum()
    }
}

/// One pass of kubelet's image garbage collection over `images` at `now`:
/// first every unused image past the policy's maximum age, then, in
/// eviction order, images that [`may_free`] until `bytes_to_free` bytes are
/// freed (none when it is zero). `remove` removes one image and says how
/// many bytes that freed; a failure is kept and the pass goes on, as
/// kubelet's does.
pub fn collect<E>(
    images: Vec<Candidate>,
    policy: &Policy,
    bytes_to_free: u64,
    now: DateTime<Utc>,
    mut remove: impl FnMut(&Candidate) -> Result<u64, E>,
) -> Outcome<E> {
    let mut out = Outcome {
        removed: Vec::new(),
        freed: 0,
        errors: Vec::new(),
    };
    let mut left = Vec::new();
    for image in eviction_order(images) {
        if !too_old(&image, now, policy) {
            left.push(image);
            continue;
        }
        match remove(&image) {
            Ok(bytes) => out.removed.push(Freed {
                id: image.id.clone(),
                names: image.names.clone(),
                bytes,
                for_age: true,
            }),
            Err(e) => {
                out.errors.push(e);
                left.push(image);
            }
        }
    }
    if bytes_to_free == 0 {
        return out;
    }
    for image in left {
        if !may_free(&image, now, policy.min_age) {
            continue;
        }
        match remove(&image) {
            Ok(bytes) => {
                out.freed += bytes;
                out.removed.push(Freed {
                    id: image.id.clone(),
                    names: image.names.clone(),
                    bytes,
                    for_age: false,
                });
                if out.freed >= bytes_to_free {
                    break;
                }
            }
            Err(e) => out.errors.push(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fake clock: `t(s)` is `s` seconds after a fixed instant.
    fn t(s: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::seconds(s)
    }

    fn image(name: &str, pulled: i64, used: Option<i64>, in_use: bool) -> Candidate {
        Candidate {
            id: Digest::of(name.as_bytes()),
            names: vec![name.into()],
            pulled_at: t(pulled),
            last_used: used.map(t),
            in_use,
        }
    }

    fn names(images: &[Candidate]) -> Vec<&str> {
        images.iter().map(|c| c.names[0].as_str()).collect()
    }

    const MIN: Duration = Duration::from_secs(120);

    /// Runs [`collect`] with sizes by name; what was removed, in order.
    fn run(
        images: Vec<Candidate>,
        policy: Policy,
        bytes_to_free: u64,
        now: i64,
        sizes: &[(&str, u64)],
    ) -> (Vec<String>, Outcome<String>) {
        let mut order = Vec::new();
        let out = collect(images, &policy, bytes_to_free, t(now), |c| {
            let name = c.names[0].clone();
            order.push(name.clone());
            match sizes.iter().find(|(n, _)| *n == name) {
                Some((_, 0)) => Err(format!("remove {name}: refused")),
                Some((_, b)) => Ok(*b),
                None => Ok(1),
            }
        });
        (order, out)
    }

    #[test]
    fn unused_images_go_least_recently_used_first_never_used_before_used() {
        let order = eviction_order(vec![
            image("used-late", 0, Some(500), false),
            image("running", 0, Some(100), true),
            image("never-b", 20, None, false),
            image("used-early", 0, Some(300), false),
            image("never-a", 10, None, false),
        ]);
        assert_eq!(
            names(&order),
            ["never-a", "never-b", "used-early", "used-late"]
        );
    }

    #[test]
    fn ties_in_last_use_are_broken_by_pull_time() {
        let order = eviction_order(vec![
            image("pulled-later", 50, Some(300), false),
            image("pulled-earlier", 40, Some(300), false),
        ]);
        assert_eq!(names(&order), ["pulled-earlier", "pulled-later"]);
    }

    #[test]
    fn freeing_stops_once_enough_is_freed() {
        let images = vec![
            image("a", 0, Some(100), false),
            image("b", 0, Some(200), false),
            image("c", 0, Some(300), false),
        ];
        let policy = Policy {
            min_age: MIN,
            max_age: None,
        };
        let sizes = [("a", 40), ("b", 70), ("c", 500)];
        let (order, out) = run(images.clone(), policy, 100, 1000, &sizes);
        assert_eq!(order, ["a", "b"]);
        assert_eq!(out.freed, 110);
        assert!(out.errors.is_empty());
        // Exactly enough stops too (kubelet: freed >= bytesToFree).
        let (order, _) = run(images.clone(), policy, 40, 1000, &sizes);
        assert_eq!(order, ["a"]);
        // Nothing to free removes nothing.
        let (order, out) = run(images, policy, 0, 1000, &sizes);
        assert!(order.is_empty() && out.removed.is_empty());
    }

    #[test]
    fn young_and_used_images_are_never_freed_and_the_shortfall_shows() {
        let images = vec![
            image("old", 0, None, false),
            image("young", 900, None, false),
            image("running", 0, Some(950), true),
            image("just-used", 0, Some(1000), false),
        ];
        let policy = Policy {
            min_age: MIN,
            max_age: None,
        };
        let (order, out) = run(images, policy, 10_000, 1000, &[("old", 30)]);
        assert_eq!(order, ["old"]);
        assert_eq!(out.freed, 30);
        // Exactly the minimum age old is old enough (kubelet skips `age < minAge`).
        assert!(!may_free(&image("x", 881, None, false), t(1000), MIN));
        assert!(may_free(&image("x", 881, None, false), t(1001), MIN));
    }

    #[test]
    fn a_failed_removal_is_kept_and_the_next_image_is_tried() {
        let images = vec![image("a", 0, None, false), image("b", 1, None, false)];
        let policy = Policy::default();
        let (order, out) = run(images, policy, 5, 1000, &[("a", 0), ("b", 9)]);
        assert_eq!(order, ["a", "b"]);
        assert_eq!(out.errors, ["remove a: refused"]);
        assert_eq!(out.freed, 9);
        assert_eq!(out.removed.len(), 1);
    }

    #[test]
    fn images_past_the_maximum_age_go_whatever_the_usage() {
        let policy = Policy {
            min_age: MIN,
            max_age: Some(Duration::from_secs(3600)),
        };
        let images = vec![
            image("idle", 0, Some(100), false),
            image("never-used-old", 0, None, false),
            image("never-used-new", 4000, None, false),
            image("recent", 0, Some(3000), false),
            image("running", 0, Some(10), true),
        ];
        let (order, out) = run(images.clone(), policy, 0, 4000, &[]);
        assert_eq!(order, ["never-used-old", "idle"]);
        assert!(out.removed.iter().all(|f| f.for_age));
        assert_eq!(out.freed, 0, "age removals are not counted as space freed");
        // Exactly the maximum age is not past it.
        let (order, _) = run(images.clone(), policy, 0, 3700, &[]);
        assert_eq!(order, ["never-used-old"]);
        // Off: nothing goes for its age.
        let off = Policy {
            max_age: None,
            ..policy
        };
        let (order, _) = run(images, off, 0, 1_000_000, &[]);
        assert!(order.is_empty());
    }

    #[test]
    fn space_is_freed_after_the_age_pass_from_what_is_left() {
        let policy = Policy {
            min_age: MIN,
            max_age: Some(Duration::from_secs(3600)),
        };
        let images = vec![
            image("ancient", 0, Some(0), false),
            image("a", 0, Some(3000), false),
            image("b", 0, Some(3500), false),
        ];
        let (order, out) = run(images, policy, 10, 4000, &[("a", 10), ("b", 10)]);
        assert_eq!(order, ["ancient", "a"]);
        assert_eq!(out.freed, 10);
        assert_eq!(out.total_bytes(), 11);
    }
}
