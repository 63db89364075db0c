//! Kubelet's exponential back-off, for restarting crashed containers
//! (CrashLoopBackOff) and for retrying failed image pulls (ImagePullBackOff).
//!
//! One [`BackOff`] per key (a container of a pod, or an image of a pod). It is a
//! plain value the driver stores (SQLite) and passes back in: every function
//! takes the time as an argument, so the rules are tested without sleeping.
//!
//! The rules are client-go's `util/flowcontrol/backoff.go` as kubelet uses it
//! (`doBackOff` in pkg/kubelet/kuberuntime/kuberuntime_manager.go):
//! - a container that never exited starts at once and touches nothing;
//! - when an exited container may start again (`now - finished_at >= delay`),
//!   the start moves the delay to the next mark: `initial` the first time,
//!   then doubled, capped at `max`, and remembers the time of that start;
//! - the entry is forgotten ("expired") when the exit came more than `2 × max`
//!   after the start that last moved it: a container that ran 10 minutes
//!   (with the default 5 min cap) starts over at `initial`.
//!
//! A container that crashes at once therefore restarts at about 0 s, 10 s,
//! 30 s, 70 s, 150 s, 310 s, 610 s, 910 s … after its first exit.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The back-off's base and cap. Kubelet's are 10 s and 300 s for both container
/// restarts and image pulls; end-to-end tests scale them down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackOffConfig {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay; an entry also expires after twice this.
    pub max: Duration,
}

impl Default for BackOffConfig {
    fn default() -> Self {
        BackOffConfig {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

/// The back-off state of one key: the current delay and when it was last moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackOff {
    /// The delay now in force; `None` while nothing happened (or after a reset).
    delay: Option<Duration>,
    /// When the delay was last moved (the start, or the failed pull).
    last_update: Option<DateTime<Utc>>,
}

impl BackOff {
    /// An empty back-off: the next start or pull goes at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// The delay now in force, as kubelet's `Backoff.Get`: what its
    /// "back-off 10s restarting failed container" message shows.
    pub fn delay(&self) -> Option<Duration> {
        self.delay
    }

    /// When the delay was last moved.
    pub fn last_update(&self) -> Option<DateTime<Utc>> {
        self.last_update
    }

    /// Whether the entry is forgotten for an event at `event`: it came more than
    /// twice the cap after the last update (`hasExpired` in backoff.go).
    fn expired_at(&self, event: DateTime<Utc>, config: &BackOffConfig) -> bool {
        match self.last_update {
            None => true,
            Some(last) => event - last > twice(config.max),
        }
    }

    /// When a container that exited at `finished_at` may start again, or `None`
    /// when no back-off holds it (start at once). The returned time may be in the
    /// past: then it may start now. Kubelet's `IsInBackOffSince(key, finishedAt)`.
    pub fn restart_allowed_at(
        &self,
        finished_at: DateTime<Utc>,
        config: &BackOffConfig,
    ) -> Option<DateTime<Utc>> {
        let delay = self.delay?;
        if self.expired_at(finished_at, config) {
            return None;
        }
        Some(finished_at + chrono_duration(delay))
    }

    /// Whether a container that exited at `finished_at` must still wait at `now`.
    pub fn in_back_off(
        &self,
        finished_at: DateTime<Utc>,
        now: DateTime<Utc>,
        config: &BackOffConfig,
    ) -> bool {
        self.restart_allowed_at(finished_at, config)
            .is_some_and(|at| now < at)
    }

    /// Records that a container which exited at `finished_at` is being started
    /// again at `now` (kubelet's `Backoff.Next(key, finishedAt)`): the delay goes
    /// to `initial` when the entry is new or expired, else doubles up to `max`.
    /// Call it only for a restart (the container exited before), not a first start.
    pub fn record_restart(
        &mut self,
        finished_at: DateTime<Utc>,
        now: DateTime<Utc>,
        config: &BackOffConfig,
    ) {
        self.step(finished_at, now, config);
    }

    /// Records a failed image pull at `now` (the image puller's
    /// `backOff.Next(key, now)`), which starts or lengthens its back-off.
    pub fn record_failure(&mut self, now: DateTime<Utc>, config: &BackOffConfig) {
        self.step(now, now, config);
    }

    /// When a failed pull may be retried, or `None` when nothing holds it: the
    /// last failure plus the delay, unless the entry expired by `now`. Kubelet's
    /// `IsInBackOffSinceUpdate(key, now)` is `now < retry_allowed_at`.
    pub fn retry_allowed_at(
        &self,
        now: DateTime<Utc>,
        config: &BackOffConfig,
    ) -> Option<DateTime<Utc>> {
        let delay = self.delay?;
        let last = self.last_update?;
        if self.expired_at(now, config) {
            return None;
        }
        Some(last + chrono_duration(delay))
    }

    /// Whether a failed pull must still wait at `now` (ImagePullBackOff).
    pub fn pull_in_back_off(&self, now: DateTime<Utc>, config: &BackOffConfig) -> bool {
        self.retry_allowed_at(now, config)
            .is_some_and(|at| now < at)
    }

    /// Forgets everything (kubelet's `Reset`), e.g. after a successful pull.
    pub fn reset(&mut self) {
        *self = BackOff::default();
    }

    fn step(&mut self, event: DateTime<Utc>, now: DateTime<Utc>, config: &BackOffConfig) {
        let next = match self.delay {
            Some(delay) if !self.expired_at(event, config) => {
                delay.saturating_mul(2).min(config.max)
            }
            _ => config.initial,
        };
        self.delay = Some(next);
        self.last_update = Some(now);
    }
}

fn twice(d: Duration) -> chrono::TimeDelta {
    chrono_duration(d.saturating_mul(2))
}

/// A std duration as chrono's, saturating far beyond any back-off.
pub(crate) fn chrono_duration(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}

/// A duration as Go's `time.Duration.String()` prints it ("10s", "1m20s",
/// "5m0s", "500ms"): kubelet's back-off messages quote it.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let total_secs = d.as_secs();
    let hours = total_secs / 3600;
    let minutes = (total_secs / 60) % 60;
    let secs_nanos = nanos % 60_000_000_000;
    let secs = trim_fraction(secs_nanos, 1_000_000_000);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{secs}s"));
    out
}

/// A duration in Go's notation (`16ms`, `1.5s`, `2m3.004s`, `1h0m0s`) back, as
/// [`go_duration`] writes it; `None` for anything else.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    if text == "0s" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, after) = rest.split_at(number_end);
        let value: f64 = number.parse().ok()?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "µs" | "us" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = next;
    }
    Some(Duration::from_secs_f64(total))
}

/// `value / unit` with the fraction's trailing zeros dropped ("1.5", "10").
fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let fraction = value % unit;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests;
