//! containerd's default seccomp profile (contrib/seccomp/seccomp_default.go
//! DefaultProfile, itself moby's profiles/seccomp/default.json): deny with EPERM
//! everything not allowed, allow ~360 syscalls, a few with argument filters, and more
//! when the container holds the capability that makes them safe.
//!
//! Built faithfully for the architecture podrun is compiled for, with one simplification:
//! the kernel ≥ 4.8 rule (ptrace and process_vm_* allowed) is always included, since
//! podrun needs a newer kernel anyway.

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// The syscalls allowed unconditionally.
pub fn allowed_syscalls() -> impl Iterator<Item = &'static str> {
    include_str!("default_allow.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;
const ENOSYS: u32 = 38;
const CLONE_NAMESPACE_FLAGS: u64 = 0x0002_0000 // CLONE_NEWNS
    | 0x0400_0000 // CLONE_NEWUTS
    | 0x0800_0000 // CLONE_NEWIPC
    | 0x1000_0000 // CLONE_NEWUSER
    | 0x2000_0000 // CLONE_NEWPID
    | 0x4000_0000 // CLONE_NEWNET
    | 0x0200_0000; // CLONE_NEWCGROUP

fn allow(names: &[&str]) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(LinuxSeccompAction::ScmpActAllow);
    s
}

fn allow_if(
    name: &str,
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: Option<u64>,
) -> LinuxSyscall {
    let mut arg = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    if let Some(two) = value_two {
        arg = arg.value_two(two);
    }
    let arg = arg
        .build()
        .expect("a seccomp argument with index, value and op builds");
    let mut s = allow(&[name]);
    s.set_args(Some(vec![arg]));
    s
}

/// The seccomp architectures of the build target (containerd's `arches()`).
pub fn arches() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchArm, Arch::ScmpArchAarch64]
    } else if cfg!(target_arch = "s390x") {
        vec![Arch::ScmpArchS390, Arch::ScmpArchS390x]
    } else if cfg!(target_arch = "riscv64") {
        vec![Arch::ScmpArchRiscv64]
    } else if cfg!(target_arch = "loongarch64") {
        vec![Arch::ScmpArchLoongarch64]
    } else {
        Vec::new()
    }
}

fn arch_specific() -> &'static [&'static str] {
    if cfg!(target_arch = "x86_64") {
        &["arch_prctl", "modify_ldt"]
    } else if cfg!(target_arch = "x86") {
        &["modify_ldt"]
    } else if cfg!(any(target_arch = "arm", target_arch = "aarch64")) {
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ]
    } else if cfg!(target_arch = "powerpc64") {
        &["sync_file_range2", "swapcontext"]
    } else if cfg!(target_arch = "s390x") {
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ]
    } else if cfg!(target_arch = "riscv64") {
        &["riscv_flush_icache", "riscv_hwprobe"]
    } else {
        &[]
    }
}

/// The syscalls a capability unlocks.
fn unlocked_by(cap: Capability) -> &'static [&'static str] {
    match cap {
        Capability::DacReadSearch => &["open_by_handle_at"],
        Capability::SysAdmin => &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        Capability::SysBoot => &["reboot"],
        Capability::SysChroot => &["chroot"],
        Capability::SysModule => &["delete_module", "init_module", "finit_module"],
        Capability::SysPacct => &["acct"],
        Capability::SysPtrace => &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
        Capability::SysRawio => &["iopl", "ioperm"],
        Capability::SysTime => &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        Capability::SysTtyConfig => &["vhangup"],
        Capability::SysNice => &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
        Capability::Syslog => &["syslog"],
        Capability::Bpf => &["bpf"],
        Capability::Perfmon => &["perf_event_open"],
        _ => &[],
    }
}

/// The default profile for a container whose bounding set is `caps`.
pub fn default_profile(caps: &Capabilities) -> LinuxSeccomp {
    use LinuxSeccompOperator::*;
    let names: Vec<&str> = allowed_syscalls().collect();
    let mut rules = vec![
        allow(&names),
        // socket(2) for every family but AF_ALG and AF_VSOCK: three single-condition
        // rules, since runc ORs repeated conditions on one argument.
        allow_if("socket", 0, ScmpCmpLt, AF_ALG, None),
        allow_if("socket", 0, ScmpCmpEq, AF_ALG + 1, None),
        allow_if("socket", 0, ScmpCmpGt, AF_VSOCK, None),
    ];
    for persona in [0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff] {
        rules.push(allow_if("personality", 0, ScmpCmpEq, persona, None));
    }
    // Kernel ≥ 4.8 (always true where podrun runs).
    rules.push(allow(&["process_vm_readv", "process_vm_writev", "ptrace"]));
    if !arch_specific().is_empty() {
        rules.push(allow(arch_specific()));
    }
    // containerd walks the bounding set in the spec's order; ours is a set, so walk the
    // capabilities in their numeric order for a stable profile.
    for cap in crate::security::ALL_CAPS
        .iter()
        .filter(|c| caps.contains(c))
    {
        let names = unlocked_by(*cap);
        if !names.is_empty() {
            rules.push(allow(names));
        }
    }
    if !caps.contains(&Capability::SysAdmin) {
        // clone without namespace flags; the flags are the second argument on s390.
        let index = if cfg!(target_arch = "s390x") { 1 } else { 0 };
        rules.push(allow_if(
            "clone",
            index,
            ScmpCmpMaskedEq,
            CLONE_NAMESPACE_FLAGS,
            Some(0),
        ));
        // clone3 gets ENOSYS, not EPERM, so libcs fall back to clone (moby#42681).
        let mut clone3 = LinuxSyscall::default();
        clone3.set_names(vec!["clone3".into()]);
        clone3.set_action(LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(ENOSYS));
        rules.push(clone3);
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_architectures(Some(arches()));
    profile.set_syscalls(Some(rules));
    profile
}
