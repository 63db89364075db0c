//! Kubernetes resource quantities (`100m`, `1.5Gi`, `1e3`) and the pod QoS class.
//!
//! k8s-openapi keeps a `Quantity` as the string the user wrote; this module gives it a
//! value. Values are held exactly in nano-units (10⁻⁹) in an `i128`, which covers every
//! quantity Kubernetes itself can represent with its 64-bit scaled integers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A quantity that failed to parse or does not fit the requested unit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {reason}")]
pub struct QuantityError {
    /// The text that was parsed.
    pub input: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

/// The exact value of a Kubernetes quantity, in nano-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ParsedQuantity {
    nanos: i128,
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;

impl ParsedQuantity {
    /// The quantity `n` (a plain number, no suffix).
    pub fn from_units(n: i64) -> Self {
        ParsedQuantity {
            nanos: i128::from(n) * NANOS_PER_UNIT,
        }
    }

    /// The value in nano-units (`1` is 1_000_000_000).
    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// The value rounded up to a whole number, like Kubernetes' `Quantity.Value()`.
    pub fn value(self) -> i128 {
        div_ceil(self.nanos, NANOS_PER_UNIT)
    }

    /// The value in thousandths rounded up, like Kubernetes' `Quantity.MilliValue()`.
    pub fn milli_value(self) -> i128 {
        div_ceil(self.nanos, 1_000_000)
    }

    /// Whether the value is a whole number.
    pub fn is_integer(self) -> bool {
        self.nanos % NANOS_PER_UNIT == 0
    }

    /// Whether the value is below zero.
    pub fn is_negative(self) -> bool {
        self.nanos < 0
    }

    /// Whether the value is zero.
    pub fn is_zero(self) -> bool {
        self.nanos == 0
    }

    fn checked_add(self, other: Self) -> Option<Self> {
        self.nanos
            .checked_add(other.nanos)
            .map(|nanos| ParsedQuantity { nanos })
    }
}

/// The shortest exact form: `2`, `500m`, `1500u`, `7n`.
impl std::fmt::Display for ParsedQuantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.nanos;
        if n % NANOS_PER_UNIT == 0 {
            write!(f, "{}", n / NANOS_PER_UNIT)
        } else if n % 1_000_000 == 0 {
            write!(f, "{}m", n / 1_000_000)
        } else if n % 1_000 == 0 {
            write!(f, "{}u", n / 1_000)
        } else {
            write!(f, "{n}n")
        }
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b > 0 {
        q + 1
    } else {
        q
    }
}

/// Parses a quantity as the API server does (`resource.ParseQuantity`):
/// `<sign>?<digits>[.<digits>]<suffix>` where the suffix is a decimal SI prefix
/// (`n u m "" k M G T P E`), a binary one (`Ki Mi Gi Ti Pi Ei`) or a decimal exponent
/// (`e3`, `E-2`). Precision below a nano-unit is rounded up, as Kubernetes does.
pub fn parse_quantity(text: &str) -> Result<ParsedQuantity, QuantityError> {
    let fail = |reason| QuantityError {
        input: text.to_string(),
        reason,
    };
    let bytes = text.as_bytes();
    let mut i = 0;
    let negative = match bytes.first() {
        None => return Err(fail("empty quantity")),
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        Some(_) => false,
    };
    // Mantissa digits, without leading zeros so that long zero fractions cannot overflow.
    let mut mantissa: i128 = 0;
    let mut digits = 0;
    let mut frac_digits: i32 = 0;
    let mut seen_point = false;
    while i < bytes.len() {
        match bytes[i] {
            b'0'..=b'9' => {
                digits += 1;
                mantissa = mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(i128::from(bytes[i] - b'0')))
                    .ok_or_else(|| fail("too many digits"))?;
                if seen_point {
                    frac_digits += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return Err(fail("must start with a number"));
    }
    let (binary_shift, decimal_exp): (u32, i32) = match &text[i..] {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        suffix if suffix.starts_with(['e', 'E']) => {
            let exp = &suffix[1..];
            let unsigned = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail("unknown suffix"));
            }
            (0, exp.parse().map_err(|_| fail("exponent too large"))?)
        }
        _ => return Err(fail("unknown suffix")),
    };
    let too_large = || fail("too large");
    let mut value = mantissa
        .checked_mul(1i128 << binary_shift)
        .ok_or_else(too_large)?;
    let exp = 9i64 + i64::from(decimal_exp) - i64::from(frac_digits);
    if exp >= 0 {
        let scale = u32::try_from(exp)
            .ok()
            .and_then(|e| 10i128.checked_pow(e))
            .ok_or_else(too_large)?;
        value = value.checked_mul(scale).ok_or_else(too_large)?;
    } else {
        // Finer than a nano-unit: round up (away from zero), as the API server does.
        value = match u32::try_from(-exp).ok().and_then(|e| 10i128.checked_pow(e)) {
            Some(scale) => div_ceil(value, scale),
            None => i128::from(value > 0),
        };
    }
    Ok(ParsedQuantity {
        nanos: if negative { -value } else { value },
    })
}

/// The quantity `text` as the API prints it (Go's `Quantity.String()`, its
/// canonical form in the format of its suffix): `1024Ki` → `1Mi`,
/// `1500000` → `1500k`, `0.5` → `500m`, `1e6` → `1e6`; a binary quantity below
/// 1024 or not whole prints in decimal SI.
pub fn canonical_quantity(text: &str) -> Result<String, QuantityError> {
    let nanos = parse_quantity(text)?.nanos;
    let suffix = text.trim_start_matches(|c: char| c.is_ascii_digit() || "+-.".contains(c));
    let binary = suffix.ends_with('i');
    let exponent_format = suffix.starts_with(['e', 'E']) && suffix.len() > 1;
    let sign = if nanos < 0 { "-" } else { "" };
    let magnitude = nanos.unsigned_abs();
    if binary
        && magnitude >= 1024 * NANOS_PER_UNIT as u128
        && magnitude.is_multiple_of(NANOS_PER_UNIT as u128)
    {
        let mut n = magnitude / NANOS_PER_UNIT as u128;
        let mut power = 0;
        while n.is_multiple_of(1024) && power < 6 {
            n /= 1024;
            power += 1;
        }
        let unit = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
        return Ok(format!("{sign}{n}{unit}"));
    }
    if magnitude == 0 {
        return Ok("0".into());
    }
    // Mantissa and a power of ten that is a multiple of 3, from nano-units up.
    let (mut n, mut exp) = (magnitude, -9i32);
    while n.is_multiple_of(1000) && exp < 18 {
        n /= 1000;
        exp += 3;
    }
    if exponent_format {
        let e = if exp == 0 {
            String::new()
        } else {
            format!("e{exp}")
        };
        return Ok(format!("{sign}{n}{e}"));
    }
    let unit = match exp {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    Ok(format!("{sign}{n}{unit}"))
}

/// CPU in millicores, rounded up (kubelet's `MilliValue()`): `100m` → 100, `0.5` → 500.
pub fn cpu_millis(quantity: &Quantity) -> Result<i64, QuantityError> {
    let parsed = parse_quantity(&quantity.0)?;
    i64::try_from(parsed.milli_value()).map_err(|_| QuantityError {
        input: quantity.0.clone(),
        reason: "too large",
    })
}

/// Memory (or storage) in bytes, rounded up (kubelet's `Value()`): `1.5Gi` → 1610612736.
pub fn memory_bytes(quantity: &Quantity) -> Result<i64, QuantityError> {
    let parsed = parse_quantity(&quantity.0)?;
    i64::try_from(parsed.value()).map_err(|_| QuantityError {
        input: quantity.0.clone(),
        reason: "too large",
    })
}

/// A pod's quality-of-service class, which decides its cgroup parent and OOM score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosClass {
    /// Every container sets equal cpu and memory requests and limits.
    Guaranteed,
    /// Something is requested or limited, but not enough for Guaranteed.
    Burstable,
    /// No container requests or limits cpu or memory.
    BestEffort,
}

impl QosClass {
    /// The name used in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

impl std::fmt::Display for QosClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

type Amounts = BTreeMap<String, ParsedQuantity>;

/// The QoS class as kubelet computes it (pkg/apis/core/v1/helper/qos/qos.go `ComputePodQOS`).
///
/// Only cpu and memory count. Requests and limits are summed over containers and init
/// containers (ephemeral containers have no resources), zero values are ignored; the
/// pod is Guaranteed when every container limits both cpu and memory and the summed
/// requests equal the summed limits. Pod-level `spec.resources`, when it sets cpu or
/// memory, replaces the per-container computation (PodLevelResources). The API server's
/// defaulting (requests default to limits) is applied first, so a raw pod and a
/// defaulted one get the same class.
pub fn qos_class(pod: &Pod) -> QosClass {
    let mut pod = pod.clone();
    crate::defaults::default_requests_from_limits(&mut pod);
    let Some(spec) = pod.spec.as_ref() else {
        return QosClass::BestEffort;
    };
    let mut requests = Amounts::new();
    let mut limits = Amounts::new();
    let mut guaranteed = true;
    let pod_level = spec.resources.as_ref().filter(|r| {
        [&r.requests, &r.limits]
            .into_iter()
            .flatten()
            .any(|list| list.keys().any(|k| is_qos_resource(k)))
    });
    if let Some(resources) = pod_level {
        add_positive(&mut requests, resources.requests.as_ref());
        if let Some(found) = add_positive(&mut limits, resources.limits.as_ref()) {
            guaranteed &= found;
        }
    } else {
        let all = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        for container in all {
            let resources = container.resources.as_ref();
            add_positive(&mut requests, resources.and_then(|r| r.requests.as_ref()));
            let found = add_positive(&mut limits, resources.and_then(|r| r.limits.as_ref()));
            guaranteed &= found.unwrap_or(false);
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed {
        guaranteed = requests
            .iter()
            .all(|(name, req)| limits.get(name) == Some(req));
    }
    if guaranteed && requests.len() == limits.len() {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

fn is_qos_resource(name: &str) -> bool {
    name == "cpu" || name == "memory"
}

/// Adds the positive cpu/memory amounts of `list` into `into`; returns, when the list is
/// present, whether it held positive values for both cpu and memory.
fn add_positive(into: &mut Amounts, list: Option<&BTreeMap<String, Quantity>>) -> Option<bool> {
    let list = list?;
    let mut found = 0;
    for (name, quantity) in list {
        if !is_qos_resource(name) {
            continue;
        }
        let Ok(amount) = parse_quantity(&quantity.0) else {
            continue;
        };
        if amount.nanos > 0 {
            found += 1;
            let entry = into.entry(name.clone()).or_default();
            *entry = entry.checked_add(amount).unwrap_or(*entry);
        }
    }
    Some(found == 2)
}

/// The requests of a container, with missing ones taken from its limits (as defaulted).
pub(crate) fn effective_requests(container: &Container) -> Amounts {
    let mut out = Amounts::new();
    let Some(resources) = container.resources.as_ref() else {
        return out;
    };
    for list in [&resources.limits, &resources.requests]
        .into_iter()
        .flatten()
    {
        for (name, quantity) in list {
            if let Ok(amount) = parse_quantity(&quantity.0) {
                out.insert(name.clone(), amount);
            }
        }
    }
    out
}

/// The pod's effective requests from its containers, the way the scheduler and
/// kubelet aggregate them (k8s.io/component-helpers/resource `AggregateContainerRequests`):
/// the larger of (all regular containers + sidecars) and, for each plain init container,
/// (that container + the sidecars started before it).
pub(crate) fn aggregate_container_requests(pod: &Pod) -> Amounts {
    let mut total = Amounts::new();
    let Some(spec) = pod.spec.as_ref() else {
        return total;
    };
    let add = |into: &mut Amounts, from: &Amounts| {
        for (name, amount) in from {
            let entry = into.entry(name.clone()).or_default();
            *entry = entry.checked_add(*amount).unwrap_or(*entry);
        }
    };
    for container in &spec.containers {
        add(&mut total, &effective_requests(container));
    }
    let mut sidecars = Amounts::new();
    let mut init_peak = Amounts::new();
    for container in spec.init_containers.iter().flatten() {
        let requests = effective_requests(container);
        if container.restart_policy.as_deref() == Some("Always") {
            add(&mut sidecars, &requests);
            add(&mut total, &requests);
        } else {
            let mut at_start = sidecars.clone();
            add(&mut at_start, &requests);
            for (name, amount) in at_start {
                let peak = init_peak.entry(name).or_default();
                *peak = (*peak).max(amount);
            }
        }
        for (name, amount) in &sidecars {
            let peak = init_peak.entry(name.clone()).or_default();
            *peak = (*peak).max(*amount);
        }
    }
    for (name, amount) in init_peak {
        let entry = total.entry(name).or_default();
        *entry = (*entry).max(amount);
    }
    total
}

#[cfg(test)]
mod tests;
