//! Reading the host facts that spec generation takes as input ([`Host`]), once, outside
//! the pure generation.

use std::path::Path;

use oci_spec::runtime::PosixRlimitType;
use rustix::process::Resource;

use crate::input::Host;
use crate::security::caps_from_mask;

const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

const RLIMITS: [(PosixRlimitType, Resource); 16] = [
    (PosixRlimitType::RlimitCpu, Resource::Cpu),
    (PosixRlimitType::RlimitFsize, Resource::Fsize),
    (PosixRlimitType::RlimitData, Resource::Data),
    (PosixRlimitType::RlimitStack, Resource::Stack),
    (PosixRlimitType::RlimitCore, Resource::Core),
    (PosixRlimitType::RlimitRss, Resource::Rss),
    (PosixRlimitType::RlimitNproc, Resource::Nproc),
    (PosixRlimitType::RlimitNofile, Resource::Nofile),
    (PosixRlimitType::RlimitMemlock, Resource::Memlock),
    (PosixRlimitType::RlimitAs, Resource::As),
    (PosixRlimitType::RlimitLocks, Resource::Locks),
    (PosixRlimitType::RlimitSigpending, Resource::Sigpending),
    (PosixRlimitType::RlimitMsgqueue, Resource::Msgqueue),
    (PosixRlimitType::RlimitNice, Resource::Nice),
    (PosixRlimitType::RlimitRtprio, Resource::Rtprio),
    (PosixRlimitType::RlimitRttime, Resource::Rttime),
];

impl Host {
    /// Reads this process's hard rlimits, bounding capabilities and oom_score_adj, and
    /// the cgroup layout; the node settings keep their defaults.
    pub fn detect() -> std::io::Result<Self> {
        let hard_rlimits = RLIMITS
            .iter()
            .filter_map(|(typ, res)| {
                rustix::process::getrlimit(*res)
                    .maximum
                    .map(|max| (*typ, max))
            })
            .collect();
        let status = std::fs::read_to_string("/proc/self/status")?;
        let capabilities = status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .and_then(caps_from_mask);
        let oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj")?
            .trim()
            .parse()
            .unwrap_or(0);
        let cgroup_unified =
            rustix::fs::statfs("/sys/fs/cgroup")?.f_type as u64 == CGROUP2_SUPER_MAGIC;
        let swap_controller = if cgroup_unified {
            // memory.swap.max is absent from the root cgroup: look in our own (containerd
            // internal/cri/opts/spec_linux.go SwapControllerAvailable).
            let cgroup = std::fs::read_to_string("/proc/self/cgroup")?;
            let own = cgroup
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/");
            Path::new("/sys/fs/cgroup")
                .join(own.trim_start_matches('/'))
                .join("memory.swap.max")
                .exists()
        } else {
            Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        };
        Ok(Self {
            hard_rlimits,
            capabilities,
            cgroup_unified,
            swap_controller,
            oom_score_adj,
            ..Self::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_reads_this_process() {
        let host = Host::detect().unwrap();
        let nofile = host
            .hard_rlimits
            .iter()
            .find(|(t, _)| *t == PosixRlimitType::RlimitNofile);
        let max = rustix::process::getrlimit(Resource::Nofile).maximum;
        assert_eq!(nofile.map(|(_, m)| *m), max);
        assert!(host.capabilities.is_some());
        assert!(host.default_rlimits.len() == 1 && !host.seccomp_default);
    }
}
