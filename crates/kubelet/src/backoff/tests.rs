use super::*;
use chrono::TimeZone;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn cfg() -> BackOffConfig {
    BackOffConfig::default()
}

#[test]
fn a_fresh_back_off_holds_nothing() {
    let b = BackOff::new();
    assert_eq!(b.restart_allowed_at(t(0), &cfg()), None);
    assert!(!b.in_back_off(t(0), t(0), &cfg()));
    assert_eq!(b.delay(), None);
}

/// A container that crashes the moment it starts restarts at 0, 10, 30, 70 …
/// seconds after its first exit, the delay doubling up to the cap.
#[test]
fn immediate_crashes_restart_at_0_10_30_70() {
    let c = cfg();
    let mut b = BackOff::new();
    let mut exit = t(0);
    let mut starts = vec![];
    for _ in 0..10 {
        let at = b.restart_allowed_at(exit, &c).unwrap_or(exit);
        assert!(!b.in_back_off(exit, at, &c));
        if at > exit {
            assert!(b.in_back_off(exit, at - chrono::TimeDelta::milliseconds(1), &c));
        }
        b.record_restart(exit, at, &c);
        starts.push((at - t(0)).num_seconds());
        exit = at; // crashes at once
    }
    assert_eq!(starts, vec![0, 10, 30, 70, 150, 310, 610, 910, 1210, 1510]);
}

#[test]
fn delays_double_and_cap() {
    let c = cfg();
    let mut b = BackOff::new();
    let table = [10, 20, 40, 80, 160, 300, 300];
    let mut now = t(0);
    for want in table {
        b.record_restart(now, now, &c);
        assert_eq!(b.delay(), Some(Duration::from_secs(want)));
        now += chrono::TimeDelta::seconds(want as i64);
    }
}

/// Measured from the previous exit: a container that ran 25 s before crashing
/// again has already served its 20 s back-off.
#[test]
fn measured_from_the_exit() {
    let c = cfg();
    let mut b = BackOff::new();
    b.record_restart(t(0), t(0), &c); // delay 10 s
    b.record_restart(t(5), t(15), &c); // delay 20 s, started at 15
                                       // ran 15 → 40, exited at 40: may restart at 60
    assert_eq!(b.restart_allowed_at(t(40), &c), Some(t(60)));
    assert!(b.in_back_off(t(40), t(59), &c));
    assert!(!b.in_back_off(t(40), t(60), &c));
}

/// Forgotten once the container ran more than twice the cap (10 minutes).
#[test]
fn forgotten_after_ten_minutes_of_running() {
    let c = cfg();
    let cases = [
        // (ran for, in back-off right after the exit, next delay)
        (599, true, 300),
        (600, true, 300),
        (601, false, 10),
    ];
    for (ran, held, next) in cases {
        let mut b = BackOff::new();
        for i in 0..8 {
            b.record_restart(t(i), t(i), &c);
        }
        assert_eq!(b.delay(), Some(Duration::from_secs(300)));
        let exit = t(7 + ran);
        assert_eq!(b.in_back_off(exit, exit, &c), held, "ran {ran}");
        b.record_restart(exit, exit, &c);
        assert_eq!(b.delay(), Some(Duration::from_secs(next)), "ran {ran}");
    }
}

#[test]
fn scaled_down_config() {
    let c = BackOffConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
    };
    let mut b = BackOff::new();
    let mut now = t(0);
    let mut delays = vec![];
    for _ in 0..5 {
        b.record_restart(now, now, &c);
        delays.push(b.delay().unwrap().as_millis());
        now += chrono::TimeDelta::milliseconds(50);
    }
    assert_eq!(delays, vec![100, 200, 400, 400, 400]);
}

#[test]
fn image_pull_back_off() {
    let c = cfg();
    let mut b = BackOff::new();
    assert!(!b.pull_in_back_off(t(0), &c));
    b.record_failure(t(0), &c);
    assert_eq!(b.retry_allowed_at(t(1), &c), Some(t(10)));
    assert!(b.pull_in_back_off(t(9), &c));
    assert!(!b.pull_in_back_off(t(10), &c));
    b.record_failure(t(11), &c);
    assert_eq!(b.retry_allowed_at(t(11), &c), Some(t(31)));
    // long after: expired, retry at once and start over at 10 s
    assert_eq!(b.retry_allowed_at(t(11 + 601), &c), None);
    b.record_failure(t(700), &c);
    assert_eq!(b.delay(), Some(Duration::from_secs(10)));
    b.reset();
    assert_eq!(b, BackOff::new());
}

#[test]
fn serde_round_trip() {
    let mut b = BackOff::new();
    b.record_restart(t(0), t(3), &cfg());
    let json = serde_json::to_string(&b).unwrap();
    let back: BackOff = serde_json::from_str(&json).unwrap();
    assert_eq!(back, b);
}

#[test]
fn go_durations() {
    let table = [
        (Duration::ZERO, "0s"),
        (Duration::from_millis(100), "100ms"),
        (Duration::from_millis(1500), "1.5s"),
        (Duration::from_secs(10), "10s"),
        (Duration::from_secs(80), "1m20s"),
        (Duration::from_secs(160), "2m40s"),
        (Duration::from_secs(300), "5m0s"),
        (Duration::from_secs(3600), "1h0m0s"),
        (Duration::from_micros(5), "5µs"),
    ];
    for (d, want) in table {
        assert_eq!(go_duration(d), want);
        assert_eq!(parse_go_duration(want), Some(d), "{want}");
    }
    assert_eq!(
        parse_go_duration("2m3.004s"),
        Some(Duration::from_millis(123_004))
    );
    for bad in ["", "3", "1x", "s", "1.2.3s"] {
        assert_eq!(parse_go_duration(bad), None, "{bad:?}");
    }
}
