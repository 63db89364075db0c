//! Probe bookkeeping: when each probe of a container is due, and what its
//! verdict is after thresholds, as kubelet's probe worker
//! (pkg/kubelet/prober/worker.go, `doProbe`) keeps it.
//!
//! Running a probe (exec, httpGet, tcpSocket, grpc) is I/O and belongs to the
//! driver: it asks [`ContainerProbes::due`] which probes to run, runs them
//! (each within [`ProbeSettings::timeout`]), and feeds each outcome back with
//! [`ContainerProbes::record`]. The verdicts go into the observation
//! ([`crate::observe::ProbeVerdicts`]) that the actions and status read.
//!
//! Rules kept from the worker:
//! - a new container instance starts from the initial verdict: readiness
//!   `Failure` (not ready until a success), liveness `Success`, startup none;
//! - nothing runs before `initialDelaySeconds` after the container started;
//! - while a startup probe has not succeeded, liveness and readiness wait; once
//!   it has, the startup probe stops;
//! - a verdict changes only after `successThreshold` successes or
//!   `failureThreshold` failures in a row;
//! - after a liveness or startup failure verdict the probe holds until a new
//!   instance of the container starts (kubelet kills it meanwhile).

use crate::observe::ProbeVerdicts;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Probe};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One probe's outcome, as kubelet's `results.Result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeResult {
    /// The probe passed.
    Success,
    /// The probe failed.
    Failure,
    /// Not known (e.g. a startup probe that has not run yet).
    Unknown,
}

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeKind {
    /// `startupProbe`: gates the others; failure kills the container.
    Startup,
    /// `livenessProbe`: failure kills the container.
    Liveness,
    /// `readinessProbe`: decides `ready`.
    Readiness,
}

impl ProbeKind {
    /// The verdict a new container instance starts from (worker.go `initialValue`).
    pub fn initial_verdict(self) -> Option<ProbeResult> {
        match self {
            ProbeKind::Readiness => Some(ProbeResult::Failure),
            ProbeKind::Liveness => Some(ProbeResult::Success),
            ProbeKind::Startup => Some(ProbeResult::Unknown),
        }
    }
}

/// A probe's timings with the API server's defaults for fields left unset
/// (pkg/apis/core/v1/defaults.go `SetDefaults_Probe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSettings {
    /// `initialDelaySeconds`, default 0.
    pub initial_delay: Duration,
    /// `periodSeconds`, default 10.
    pub period: Duration,
    /// `timeoutSeconds`, default 1.
    pub timeout: Duration,
    /// `successThreshold`, default 1.
    pub success_threshold: u32,
    /// `failureThreshold`, default 3.
    pub failure_threshold: u32,
}

impl ProbeSettings {
    /// The settings of a probe spec, defaults filled in; zero or negative values
    /// (which validation refuses) fall back to the defaults too.
    pub fn from_probe(probe: &Probe) -> Self {
        let secs = |v: Option<i32>, default: u64, min: i32| {
            Duration::from_secs(v.filter(|&v| v >= min).map_or(default, |v| v as u64))
        };
        let count =
            |v: Option<i32>, default: u32| v.filter(|&v| v >= 1).map_or(default, |v| v as u32);
        ProbeSettings {
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            timeout: secs(probe.timeout_seconds, 1, 1),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// The state of one probe of one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeState {
    kind: ProbeKind,
    probe: Probe,
    settings: ProbeSettings,
    /// When the current instance started; `None` while it is not running.
    started_at: Option<DateTime<Utc>>,
    verdict: Option<ProbeResult>,
    last_result: Option<ProbeResult>,
    run: u32,
    on_hold: bool,
    last_probe: Option<DateTime<Utc>>,
    /// Not before then: the start-up jitter of [`ProbeState::jitter_after_restart`].
    #[serde(default)]
    not_before: Option<DateTime<Utc>>,
}

impl ProbeState {
    /// A probe of `kind` from its spec, before any container instance.
    pub fn new(kind: ProbeKind, probe: &Probe) -> Self {
        ProbeState {
            kind,
            probe: probe.clone(),
            settings: ProbeSettings::from_probe(probe),
            started_at: None,
            verdict: None,
            last_result: None,
            run: 0,
            on_hold: false,
            last_probe: None,
            not_before: None,
        }
    }

    /// Which probe this is.
    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    /// The probe's spec: what to run (exec, httpGet, tcpSocket, grpc).
    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// Its timings.
    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }

    /// A new instance of the container started at `started_at`: start over from
    /// the initial verdict and lift a hold.
    pub fn container_started(&mut self, started_at: DateTime<Utc>) {
        self.started_at = Some(started_at);
        self.verdict = self.kind.initial_verdict();
        self.last_result = None;
        self.run = 0;
        self.on_hold = false;
        self.last_probe = None;
    }

    /// The container stopped: the verdict is `Failure` until a new instance
    /// (worker.go sets Failure for a non-running container).
    pub fn container_stopped(&mut self) {
        if self.started_at.take().is_some() {
            self.verdict = Some(ProbeResult::Failure);
        }
    }

    /// When the probe is next due, or `None` while it cannot run (no running
    /// instance, or held after a failure verdict). Ignores the startup gate:
    /// see [`ContainerProbes::next_due`].
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        let started = self.started_at?;
        if self.on_hold {
            return None;
        }
        let after_delay = started + crate::backoff::chrono_duration(self.settings.initial_delay);
        let at = match self.last_probe {
            None => after_delay,
            Some(last) => {
                (last + crate::backoff::chrono_duration(self.settings.period)).max(after_delay)
            }
        };
        Some(self.not_before.map_or(at, |n| at.max(n)))
    }

    /// kubelet's start-up jitter (pkg/kubelet/prober/worker.go): a probe
    /// worker made within one period of kubelet's start first waits a random
    /// part (`fraction`, in [0, 1)) of the period, so that the probes of the
    /// pods a restarted kubelet takes over do not all run at once. Applied
    /// once per start (`agent_start`), and only within that first period.
    pub fn jitter_after_restart(
        &mut self,
        agent_start: DateTime<Utc>,
        now: DateTime<Utc>,
        fraction: f64,
    ) {
        let period = crate::backoff::chrono_duration(self.settings.period);
        if now - agent_start >= period || self.not_before.is_some_and(|t| t >= agent_start) {
            return;
        }
        let wait = period.num_milliseconds() as f64 * fraction.clamp(0.0, 1.0);
        self.not_before = Some(now + chrono::Duration::milliseconds(wait as i64));
    }

    /// Whether the probe should run at `now` (ignoring the startup gate).
    pub fn due(&self, now: DateTime<Utc>) -> bool {
        self.next_due().is_some_and(|at| now >= at)
    }

    /// Records one outcome at `now`. The verdict moves only once the same
    /// outcome came `successThreshold` / `failureThreshold` times in a row.
    pub fn record(&mut self, result: ProbeResult, now: DateTime<Utc>) {
        self.last_probe = Some(now);
        if self.last_result == Some(result) {
            self.run += 1;
        } else {
            self.last_result = Some(result);
            self.run = 1;
        }
        let below = match result {
            ProbeResult::Failure => self.run < self.settings.failure_threshold,
            ProbeResult::Success => self.run < self.settings.success_threshold,
            ProbeResult::Unknown => false,
        };
        if below {
            return;
        }
        self.verdict = Some(result);
        if result == ProbeResult::Failure && self.kind != ProbeKind::Readiness {
            // The container will be killed: stop probing until a new instance.
            self.on_hold = true;
            self.run = 0;
        }
    }

    /// The current verdict (`None` before any instance).
    pub fn verdict(&self) -> Option<ProbeResult> {
        self.verdict
    }
}

/// The probes of one container, with the startup gate between them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerProbes {
    /// The startup probe, if the container has one.
    pub startup: Option<ProbeState>,
    /// The liveness probe, if any.
    pub liveness: Option<ProbeState>,
    /// The readiness probe, if any.
    pub readiness: Option<ProbeState>,
}

impl ContainerProbes {
    /// The probes a container spec declares.
    pub fn new(container: &Container) -> Self {
        let make = |kind, p: &Option<Probe>| p.as_ref().map(|p| ProbeState::new(kind, p));
        ContainerProbes {
            startup: make(ProbeKind::Startup, &container.startup_probe),
            liveness: make(ProbeKind::Liveness, &container.liveness_probe),
            readiness: make(ProbeKind::Readiness, &container.readiness_probe),
        }
    }

    fn each_mut(&mut self) -> impl Iterator<Item = &mut ProbeState> {
        [&mut self.startup, &mut self.liveness, &mut self.readiness]
            .into_iter()
            .flatten()
    }

    fn each(&self) -> impl Iterator<Item = &ProbeState> {
        [&self.startup, &self.liveness, &self.readiness]
            .into_iter()
            .flatten()
    }

    /// The probe of `kind`, if the container has it.
    pub fn get(&self, kind: ProbeKind) -> Option<&ProbeState> {
        match kind {
            ProbeKind::Startup => self.startup.as_ref(),
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
        }
    }

    /// A new instance started: every probe starts over.
    pub fn container_started(&mut self, started_at: DateTime<Utc>) {
        self.each_mut()
            .for_each(|p| p.container_started(started_at));
    }

    /// [`ProbeState::jitter_after_restart`] for each probe.
    pub fn jitter_after_restart(
        &mut self,
        agent_start: DateTime<Utc>,
        now: DateTime<Utc>,
        fraction: f64,
    ) {
        self.each_mut()
            .for_each(|p| p.jitter_after_restart(agent_start, now, fraction));
    }

    /// The instance stopped.
    pub fn container_stopped(&mut self) {
        self.each_mut().for_each(ProbeState::container_stopped);
    }

    /// Whether the container counts as started: no startup probe, or it succeeded.
    pub fn started(&self) -> bool {
        self.startup
            .as_ref()
            .is_none_or(|s| s.verdict() == Some(ProbeResult::Success))
    }

    fn gated(&self, kind: ProbeKind) -> bool {
        let started = self.started();
        match kind {
            ProbeKind::Startup => started,
            _ => !started,
        }
    }

    /// The probes to run at `now`, startup first.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<ProbeKind> {
        self.each()
            .filter(|p| !self.gated(p.kind()) && p.due(now))
            .map(ProbeState::kind)
            .collect()
    }

    /// When the next probe is due, for the driver's timer.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.each()
            .filter(|p| !self.gated(p.kind()))
            .filter_map(ProbeState::next_due)
            .min()
    }

    /// Records an outcome of the probe of `kind` (ignored if it has none).
    pub fn record(&mut self, kind: ProbeKind, result: ProbeResult, now: DateTime<Utc>) {
        let slot = match kind {
            ProbeKind::Startup => &mut self.startup,
            ProbeKind::Liveness => &mut self.liveness,
            ProbeKind::Readiness => &mut self.readiness,
        };
        if let Some(p) = slot {
            p.record(result, now);
        }
    }

    /// The verdicts, for [`crate::observe::ContainerObservation::probes`].
    pub fn verdicts(&self) -> ProbeVerdicts {
        ProbeVerdicts {
            startup: self.startup.as_ref().and_then(ProbeState::verdict),
            liveness: self.liveness.as_ref().and_then(ProbeState::verdict),
            readiness: self.readiness.as_ref().and_then(ProbeState::verdict),
        }
    }
}

#[cfg(test)]
mod tests;
