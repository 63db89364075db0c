//! Resource requests and limits → `linux.resources`, with kubelet's arithmetic
//! (pkg/kubelet/cm/helpers_linux.go, pkg/kubelet/kuberuntime/helpers_linux.go,
//! kuberuntime_container_linux.go calculateLinuxResources).

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::ConfigError;

/// The lowest cpu.shares kubelet gives (and the kernel's minimum).
pub const MIN_SHARES: u64 = 2;
/// The highest cpu.shares kubelet gives.
pub const MAX_SHARES: u64 = 262_144;
/// cpu.shares per CPU.
pub const SHARES_PER_CPU: i64 = 1024;
/// The CFS period kubelet uses (100 ms in µs).
pub const QUOTA_PERIOD: u64 = 100_000;
/// The smallest CFS quota (1 ms in µs).
pub const MIN_QUOTA: i64 = 1000;

/// kubelet's MilliCPUToShares: a request of 0 gives the minimum, 2 shares.
pub fn milli_cpu_to_shares(milli_cpu: i64) -> u64 {
    if milli_cpu == 0 {
        return MIN_SHARES;
    }
    let shares = milli_cpu.saturating_mul(SHARES_PER_CPU) / 1000;
    (shares.max(MIN_SHARES as i64) as u64).min(MAX_SHARES)
}

/// kubelet's milliCPUToQuota: no limit → no quota (0); at least 1 ms per period.
pub fn milli_cpu_to_quota(milli_cpu: i64, period: u64) -> i64 {
    if milli_cpu == 0 {
        return 0;
    }
    (milli_cpu.saturating_mul(period as i64) / 1000).max(MIN_QUOTA)
}

/// A quantity rounded up to a whole number of units, scaled by 10^`scale` first
/// (scale 3 gives Kubernetes' MilliValue, 0 its Value). None when it does not parse;
/// saturates at i64::MAX.
pub fn parse_quantity(q: &str, scale: i32) -> Option<i64> {
    let s = q.trim();
    let (negative, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(num_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with(['e', 'E']) => (e[1..].parse().ok()?, 0),
        _ => return None,
    };
    // value = mantissa · 10^(exp10 + scale − fraction digits) · 2^exp2, rounded up.
    let digits: String = format!("{int_part}{frac_part}");
    let significant = digits.trim_start_matches('0');
    let mantissa: u128 = if significant.is_empty() {
        0
    } else {
        significant.parse().ok()?
    };
    let exp = exp10 + scale - frac_part.len() as i32;
    let scaled = mantissa.checked_mul(1u128.checked_shl(exp2)?);
    let value: u128 = match scaled {
        None => u128::MAX,
        Some(v) if exp >= 0 => 10u128
            .checked_pow(exp as u32)
            .and_then(|p| v.checked_mul(p))
            .unwrap_or(u128::MAX),
        Some(v) => match 10u128.checked_pow((-exp) as u32) {
            Some(p) => v.div_ceil(p),
            None => u128::from(v != 0),
        },
    };
    let value = value.min(i64::MAX as u128) as i64;
    // Kubernetes rounds up (away from zero for positives; towards zero for negatives).
    Some(if negative { -value } else { value })
}

fn quantity(
    map: Option<&std::collections::BTreeMap<String, Quantity>>,
    name: &str,
    scale: i32,
) -> Result<Option<i64>, ConfigError> {
    let Some(q) = map.and_then(|m| m.get(name)) else {
        return Ok(None);
    };
    parse_quantity(&q.0, scale)
        .map(Some)
        .ok_or_else(|| ConfigError::InvalidQuantity {
            resource: name.to_string(),
            value: q.0.clone(),
        })
}

/// The cgroup settings of a container, before they become OCI types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerResources {
    /// cpu.shares.
    pub cpu_shares: u64,
    /// CFS quota in µs; 0 for none.
    pub cpu_quota: i64,
    /// CFS period in µs.
    pub cpu_period: u64,
    /// Memory limit in bytes; 0 for none.
    pub memory_limit: i64,
}

/// Resources of a container from its requests and limits (kubelet's
/// calculateLinuxResources with the CFS quota enforced, its default): a cpu request
/// absent while a limit is set defaults to the limit; the period is always set.
pub fn container_resources(container: &Container) -> Result<ContainerResources, ConfigError> {
    let res = container.resources.as_ref();
    let requests = res.and_then(|r| r.requests.as_ref());
    let limits = res.and_then(|r| r.limits.as_ref());
    let cpu_request = quantity(requests, "cpu", 3)?;
    let cpu_limit = quantity(limits, "cpu", 3)?;
    let memory_limit = quantity(limits, "memory", 0)?.unwrap_or(0).max(0);
    let cpu_shares = match (cpu_request, cpu_limit) {
        (None, Some(limit)) => milli_cpu_to_shares(limit),
        (request, _) => milli_cpu_to_shares(request.unwrap_or(0)),
    };
    Ok(ContainerResources {
        cpu_shares,
        cpu_quota: milli_cpu_to_quota(cpu_limit.unwrap_or(0), QUOTA_PERIOD),
        cpu_period: QUOTA_PERIOD,
        memory_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use std::collections::BTreeMap;

    #[test]
    fn quantities_round_up_like_kubernetes() {
        let cases: [(&str, i32, Option<i64>); 25] = [
            ("1", 3, Some(1000)),
            ("500m", 3, Some(500)),
            ("0.5", 3, Some(500)),
            (".5", 3, Some(500)),
            ("1.5", 3, Some(1500)),
            ("2", 3, Some(2000)),
            ("100u", 3, Some(1)),
            ("1n", 3, Some(1)),
            ("0", 3, Some(0)),
            ("0.0001", 3, Some(1)),
            ("1e3", 0, Some(1000)),
            ("1E-3", 3, Some(1)),
            ("128Mi", 0, Some(128 << 20)),
            ("1Gi", 0, Some(1 << 30)),
            ("1.5Gi", 0, Some(3 << 29)),
            ("1G", 0, Some(1_000_000_000)),
            ("100k", 0, Some(100_000)),
            ("129M", 0, Some(129_000_000)),
            ("1500m", 0, Some(2)),
            ("8Ei", 0, Some(i64::MAX)),
            ("-1", 0, Some(-1)),
            ("", 0, None),
            ("12Q", 0, None),
            ("Mi", 0, None),
            ("1.5.5", 0, None),
        ];
        for (q, scale, want) in cases {
            assert_eq!(parse_quantity(q, scale), want, "{q} scale {scale}");
        }
    }

    #[test]
    fn shares_quota_and_weight_follow_kubelet_and_runc() {
        for (milli, shares) in [
            (0, 2),
            (1, 2),
            (2, 2),
            (5, 5),
            (100, 102),
            (250, 256),
            (1000, 1024),
            (300_000, 262_144),
        ] {
            assert_eq!(milli_cpu_to_shares(milli), shares, "shares of {milli}m");
        }
        for (milli, quota) in [
            (0, 0),
            (5, 1000),
            (9, 1000),
            (10, 1000),
            (200, 20000),
            (1000, 100_000),
            (1500, 150_000),
        ] {
            assert_eq!(
                milli_cpu_to_quota(milli, QUOTA_PERIOD),
                quota,
                "quota of {milli}m"
            );
        }
    }

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let map = |v: &[(&str, &str)]| {
            (!v.is_empty()).then(|| {
                v.iter()
                    .map(|(k, q)| (k.to_string(), Quantity(q.to_string())))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: map(requests),
                limits: map(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn container_resources_table() {
        let r = |shares, quota, memory| ContainerResources {
            cpu_shares: shares,
            cpu_quota: quota,
            cpu_period: 100_000,
            memory_limit: memory,
        };
        let cases = [
            (container(&[], &[]), r(2, 0, 0)),
            (container(&[("cpu", "250m")], &[]), r(256, 0, 0)),
            (container(&[], &[("cpu", "500m")]), r(512, 50_000, 0)),
            (
                container(&[("cpu", "100m")], &[("cpu", "2")]),
                r(102, 200_000, 0),
            ),
            (
                container(&[("cpu", "0")], &[("cpu", "1")]),
                r(2, 100_000, 0),
            ),
            (
                container(&[("memory", "64Mi")], &[("memory", "128Mi")]),
                r(2, 0, 128 << 20),
            ),
            (
                Container {
                    name: "bare".into(),
                    ..Default::default()
                },
                r(2, 0, 0),
            ),
        ];
        for (i, (c, want)) in cases.into_iter().enumerate() {
            assert_eq!(container_resources(&c).unwrap(), want, "case {i}");
        }
        let bad = container(&[], &[("memory", "lots")]);
        assert_eq!(
            container_resources(&bad),
            Err(ConfigError::InvalidQuantity {
                resource: "memory".into(),
                value: "lots".into()
            })
        );
    }
}
