//! podrun-pause: the infra process of a pod. It runs no user code: it enters
//! (unshares) the pod's namespaces, sets the hostname and brings loopback up,
//! then sleeps until told to stop, reaping every child that exits (it is PID 1
//! of the pod's PID namespace when the pod shares one).
//!
//! Usage: `podrun-pause [--net] [--ipc] [--uts HOSTNAME] [--pid]`
//!
//! It prints `ready <pid>` on stdout once the namespaces are set up, where
//! `<pid>` is the process that holds them (with `--pid`, the PID 1 of the new
//! namespace, as seen from outside), and closes stdout. It exits on SIGTERM or
//! SIGINT.
//!
//! Every pod keeps one of these for its whole life, so it is made to cost a few
//! pages: no C library at run time, no Rust runtime. It has its own `_start`
//! and makes raw system calls; build.rs links it static and position-dependent
//! without start files. The standard library is still in the crate graph (a
//! crate without it needs `panic = "abort"`, which cargo cannot set for one
//! binary), so it is linked in, but nothing here may call it: it is never
//! initialised. Only `core` is used, the code cannot panic (no indexing, no
//! unwrap, no arithmetic that can overflow), and it copies nothing big enough for the
//! compiler to call `memcpy` or `memset`, which would go to an unrelocated C
//! library. The unit-test build of this file is an empty program.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
mod pause {
    use libc::{c_long, pid_t};

    #[cfg(target_arch = "x86_64")]
    core::arch::global_asm!(
        ".globl _start",
        "_start:",
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {entry}",
        "ud2",
        entry = sym entry,
    );

    #[cfg(target_arch = "aarch64")]
    core::arch::global_asm!(
        ".globl _start",
        "_start:",
        "mov x29, xzr",
        "mov x30, xzr",
        "mov x0, sp",
        "bl {entry}",
        "brk #0",
        entry = sym entry,
    );

    /// A system call with up to four arguments; returns the kernel's result
    /// (a negative errno on failure).
    #[cfg(target_arch = "x86_64")]
    fn syscall(n: c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
        let ret: isize;
        // SAFETY: the arguments are plain integers or pointers the caller keeps
        // valid for the call; the kernel clobbers only rcx and r11.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d,
                lateout("rcx") _, lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// A system call with up to four arguments; returns the kernel's result
    /// (a negative errno on failure).
    #[cfg(target_arch = "aarch64")]
    fn syscall(n: c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
        let ret: isize;
        // SAFETY: the arguments are plain integers or pointers the caller keeps
        // valid for the call.
        unsafe {
            core::arch::asm!(
                "svc #0",
                in("x8") n,
                inlateout("x0") a as isize => ret,
                in("x1") b, in("x2") c, in("x3") d,
                options(nostack),
            );
        }
        ret
    }

    fn exit(code: usize) -> ! {
        loop {
            // exit_group does not return; the loop only tells the compiler so.
            syscall(libc::SYS_exit_group, code, 0, 0, 0);
        }
    }

    fn write_all(fd: usize, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = syscall(libc::SYS_write, fd, bytes.as_ptr() as usize, bytes.len(), 0);
            if n == -(libc::EINTR as isize) {
                continue;
            }
            if n <= 0 {
                return;
            }
            bytes = bytes.get(n as usize..).unwrap_or_default();
        }
    }

    fn say(parts: &[&[u8]]) {
        for p in parts {
            write_all(2, p);
        }
    }

    /// `n` in decimal, in the tail of `buf`.
    fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
        let mut at = buf.len();
        loop {
            at -= 1;
            if let Some(d) = buf.get_mut(at) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || at == 0 {
                return buf.get(at..).unwrap_or_default();
            }
        }
    }

    /// The C library's words for the errors these calls can meet.
    fn strerror(errno: usize) -> &'static [u8] {
        match i32::try_from(errno).unwrap_or(0) {
            libc::EPERM => b"Operation not permitted",
            libc::EINVAL => b"Invalid argument",
            libc::ENOMEM => b"Cannot allocate memory",
            libc::ENOSPC => b"No space left on device",
            libc::EUSERS => b"Too many users",
            libc::EAGAIN => b"Resource temporarily unavailable",
            libc::EMFILE => b"Too many open files",
            libc::ENFILE => b"Too many open files in system",
            libc::EACCES => b"Permission denied",
            libc::ENODEV => b"No such device",
            libc::ENXIO => b"No such device or address",
            libc::EFAULT => b"Bad address",
            _ => b"Unknown error",
        }
    }

    /// Fail as `podrun-pause: WHAT: REASON (os error N)` when `ret` is an error.
    fn check(ret: isize, what: &[u8]) -> isize {
        if ret < 0 {
            let mut buf = [0; 20];
            let errno = ret.unsigned_abs();
            say(&[
                b"podrun-pause: ",
                what,
                b": ",
                strerror(errno),
                b" (os error ",
                decimal(errno as u64, &mut buf),
                b")\n",
            ]);
            exit(1);
        }
        ret
    }

    /// The NUL-terminated string at `p`, without its NUL.
    ///
    /// # Safety
    /// `p` points to a NUL-terminated string that lives as long as the process.
    unsafe fn c_str(p: *const u8) -> &'static [u8] {
        let mut len = 0;
        // Volatile: a plain loop is turned into a call to the C library's strlen.
        // SAFETY: the caller promises a NUL within the string.
        while unsafe { p.add(len).read_volatile() } != 0 {
            len += 1;
        }
        // SAFETY: the `len` bytes before the NUL are the string's.
        unsafe { core::slice::from_raw_parts(p, len) }
    }

    /// The process starts here: `sp` points to argc, then argv's pointers.
    ///
    /// # Safety
    /// Called once, by `_start`, with the stack pointer the kernel gave.
    unsafe extern "C" fn entry(sp: *const usize) -> ! {
        // SAFETY: the kernel puts argc at the top of the stack, then argc
        // pointers to NUL-terminated strings.
        let (argc, argv) = unsafe { (*sp, sp.add(1) as *const *const u8) };
        let mut flags = 0;
        let mut hostname: Option<&[u8]> = None;
        let mut pid_ns = false;
        let mut i = 1;
        while i < argc {
            // SAFETY: i < argc, so argv[i] is one of the kernel's strings.
            let arg = unsafe { c_str(*argv.add(i)) };
            i += 1;
            match arg {
                b"--net" => flags |= libc::CLONE_NEWNET,
                b"--ipc" => flags |= libc::CLONE_NEWIPC,
                b"--uts" => {
                    flags |= libc::CLONE_NEWUTS;
                    if i >= argc {
                        say(&[b"podrun-pause: --uts needs a hostname\n"]);
                        exit(2);
                    }
                    // SAFETY: as above.
                    hostname = Some(unsafe { c_str(*argv.add(i)) });
                    i += 1;
                }
                b"--pid" => pid_ns = true,
                other => {
                    say(&[b"podrun-pause: unknown argument \"", other, b"\"\n"]);
                    exit(2);
                }
            }
        }
        if pid_ns {
            flags |= libc::CLONE_NEWPID;
        }
        if flags != 0 {
            check(
                syscall(libc::SYS_unshare, flags as usize, 0, 0, 0),
                b"unshare",
            );
        }
        if let Some(name) = hostname {
            let (p, len) = (name.as_ptr() as usize, name.len());
            check(syscall(libc::SYS_sethostname, p, len, 0, 0), b"sethostname");
        }
        if flags & libc::CLONE_NEWNET != 0 {
            loopback_up();
        }
        let set = signal_set();
        let set_ptr = &set as *const u64 as usize;
        syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK as usize,
            set_ptr,
            0,
            8,
        );
        if pid_ns {
            // unshare(CLONE_NEWPID) moves only children: the child becomes PID 1.
            let child = check(
                syscall(libc::SYS_clone, libc::SIGCHLD as usize, 0, 0, 0),
                b"fork",
            );
            if child != 0 {
                announce(child as pid_t);
                exit(0);
            }
        } else {
            announce(syscall(libc::SYS_getpid, 0, 0, 0, 0) as pid_t);
        }
        serve(set_ptr)
    }

    fn signal_set() -> u64 {
        [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT]
            .iter()
            .fold(0, |set, s| set | 1 << (s - 1))
    }

    /// Tell the caller which process holds the namespaces, then let go of stdout.
    fn announce(pid: pid_t) {
        let mut buf = [0; 20];
        let digits = decimal(pid.unsigned_abs().into(), &mut buf);
        write_all(1, b"ready ");
        write_all(1, digits);
        write_all(1, b"\n");
        syscall(libc::SYS_close, 1, 0, 0, 0);
    }

    /// Wait for signals: reap children on SIGCHLD, leave on SIGTERM or SIGINT.
    fn serve(set: usize) -> ! {
        loop {
            let sig = syscall(libc::SYS_rt_sigtimedwait, set, 0, 0, 8);
            if sig == libc::SIGCHLD as isize {
                // Reap without keeping the status.
                while syscall(
                    libc::SYS_wait4,
                    -1_isize as usize,
                    0,
                    libc::WNOHANG as usize,
                    0,
                ) > 0
                {}
            } else if sig > 0 {
                exit(0);
            }
        }
    }

    /// `ip link set lo up` in the new network namespace.
    fn loopback_up() {
        let kind = (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as usize;
        let fd = check(
            syscall(libc::SYS_socket, libc::AF_INET as usize, kind, 0, 0),
            b"socket",
        ) as usize;
        // The name "lo", then the flags: `struct ifreq` as the kernel reads it.
        let mut req = [0u64; 5];
        req[0] = u64::from_le_bytes(*b"lo\0\0\0\0\0\0");
        let get = libc::SIOCGIFFLAGS as usize;
        let got = syscall(libc::SYS_ioctl, fd, get, req.as_mut_ptr() as usize, 0);
        check(got, b"get flags of lo");
        req[2] |= (libc::IFF_UP | libc::IFF_RUNNING) as u64;
        let set = syscall(
            libc::SYS_ioctl,
            fd,
            libc::SIOCSIFFLAGS as usize,
            req.as_ptr() as usize,
            0,
        );
        check(set, b"bring lo up");
        syscall(libc::SYS_close, fd, 0, 0, 0);
    }
}

#[cfg(test)]
fn main() {}
