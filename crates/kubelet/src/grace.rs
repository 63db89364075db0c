//! Grace periods as durations a process can wait out.
//!
//! The API server accepts any non-negative `terminationGracePeriodSeconds`
//! (up to `i64::MAX`). kubelet turns seconds into a Go `time.Duration`, which
//! holds at most `i64::MAX` nanoseconds (about 292 years); podrun saturates
//! there instead of overflowing (a panic in debug builds, a wrap to a tiny
//! wait in release builds, where SIGKILL would then never come or come at once).

use std::time::Duration;

/// The longest grace period podrun waits out: what a Go `time.Duration` holds.
pub const MAX_GRACE_SECONDS: i64 = i64::MAX / 1_000_000_000;

/// The pod's grace period when it sets none (the API server's default).
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// `seconds` as a duration: negative as zero, past [`MAX_GRACE_SECONDS`] as that.
pub fn grace_period(seconds: i64) -> Duration {
    Duration::from_secs(seconds.clamp(0, MAX_GRACE_SECONDS) as u64)
}

/// The pod's `terminationGracePeriodSeconds` (30 s when unset) as a duration.
pub fn pod_grace_period(pod: &k8s_openapi::api::core::v1::Pod) -> Duration {
    grace_period(
        pod.spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE_SECONDS),
    )
}

/// `d` in whole milliseconds, saturating (the monitor's protocol speaks milliseconds).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_periods_saturate_instead_of_overflowing() {
        assert_eq!(grace_period(-5), Duration::ZERO);
        assert_eq!(grace_period(30), Duration::from_secs(30));
        let max = grace_period(i64::MAX);
        assert_eq!(max, Duration::from_secs(MAX_GRACE_SECONDS as u64));
        // What the stop paths do with it must not overflow.
        assert!(std::time::Instant::now().checked_add(max).is_some());
        assert!(millis(max) < u64::MAX / 2);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
