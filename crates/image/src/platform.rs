//! Platforms (`os/arch[/variant]`) and choosing one from an image index.

use serde::Deserialize;
use std::fmt;
use std::str::FromStr;

/// A platform as image indexes name them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, `arm` …
    pub architecture: String,
    /// `v8`, `v7` …
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// This machine, in Go's names as registries use them.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
        }
    }

    /// Whether an index entry for `candidate` can run here. A missing variant
    /// matches the architecture's default (arm64 is v8), as containerd's matcher does.
    pub fn matches(&self, candidate: &Platform) -> bool {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return false;
        }
        let default_variant = match self.architecture.as_str() {
            "arm64" => Some("v8"),
            _ => None,
        };
        let want = self.variant.as_deref().or(default_variant);
        let have = candidate.variant.as_deref().or(default_variant);
        want.is_none() || have.is_none() || want == have
    }

    /// The best of `candidates` for this platform: an exact variant beats a
    /// missing one. Returns its index.
    pub fn choose(&self, candidates: &[Option<Platform>]) -> Option<usize> {
        let mut best: Option<(usize, u8)> = None;
        for (i, c) in candidates.iter().enumerate() {
            let Some(c) = c else { continue };
            if !self.matches(c) {
                continue;
            }
            let score = if c.variant == self.variant { 2 } else { 1 };
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: Some(variant.to_string()),
                })
            }
            _ => Err(format!("invalid platform {s:?}: want os/arch[/variant]")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<Platform> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn picks_os_arch_and_variant() {
        let idx = [
            p("linux/arm/v7"),
            p("linux/arm64/v8"),
            p("linux/amd64"),
            None,
        ];
        assert_eq!(p("linux/amd64").unwrap().choose(&idx), Some(2));
        assert_eq!(p("linux/arm64").unwrap().choose(&idx), Some(1));
        assert_eq!(p("linux/arm/v7").unwrap().choose(&idx), Some(0));
        assert_eq!(p("linux/arm/v6").unwrap().choose(&idx), None);
        assert_eq!(p("windows/amd64").unwrap().choose(&idx), None);
        let idx = [p("linux/arm64"), p("linux/arm64/v8")];
        assert_eq!(p("linux/arm64/v8").unwrap().choose(&idx), Some(1));
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(p("linux/arm64/v8").unwrap().to_string(), "linux/arm64/v8");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
        assert_eq!(Platform::host().os, "linux");
    }
}
