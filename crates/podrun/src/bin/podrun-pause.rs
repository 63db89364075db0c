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
//! SIGINT. Kept to libc alone so that each pod's copy costs next to nothing.

use std::ffi::CString;
use std::io::Write;

fn fail(what: &str) -> ! {
    let err = std::io::Error::last_os_error();
    let _ = writeln!(std::io::stderr(), "podrun-pause: {what}: {err}");
    std::process::exit(1)
}

fn main() {
    let mut flags = 0;
    let mut hostname: Option<String> = None;
    let mut pid_ns = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--net" => flags |= libc::CLONE_NEWNET,
            "--ipc" => flags |= libc::CLONE_NEWIPC,
            "--uts" => {
                flags |= libc::CLONE_NEWUTS;
                hostname = Some(args.next().unwrap_or_else(|| {
                    let _ = writeln!(std::io::stderr(), "podrun-pause: --uts needs a hostname");
                    std::process::exit(2)
                }));
            }
            "--pid" => pid_ns = true,
            other => {
                let _ = writeln!(
                    std::io::stderr(),
                    "podrun-pause: unknown argument {other:?}"
                );
                std::process::exit(2)
            }
        }
    }
    if pid_ns {
        flags |= libc::CLONE_NEWPID;
    }
    // SAFETY: unshare takes only flags and changes this single-threaded process's namespaces.
    if flags != 0 && unsafe { libc::unshare(flags) } != 0 {
        fail("unshare");
    }
    if let Some(name) = &hostname {
        // SAFETY: the pointer and length describe `name`'s bytes, valid for the call.
        if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
            fail("sethostname");
        }
    }
    if flags & libc::CLONE_NEWNET != 0 {
        loopback_up();
    }
    block_signals();
    if pid_ns {
        // unshare(CLONE_NEWPID) moves only children: the child becomes PID 1.
        // SAFETY: this process is single-threaded, so fork is sound.
        match unsafe { libc::fork() } {
            -1 => fail("fork"),
            0 => {}
            child => {
                announce(child);
                std::process::exit(0);
            }
        }
    } else {
        // SAFETY: getpid has no preconditions.
        announce(unsafe { libc::getpid() });
    }
    serve();
}

/// Tell the caller which process holds the namespaces, then let go of stdout.
fn announce(pid: libc::pid_t) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready {pid}");
    let _ = out.flush();
    // SAFETY: closing our own stdout; nothing writes to it afterwards.
    unsafe { libc::close(1) };
}

fn block_signals() {
    // SAFETY: the set is initialised by sigemptyset before use; sigprocmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT] {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Wait for signals: reap children on SIGCHLD, leave on SIGTERM or SIGINT.
fn serve() -> ! {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: the set is initialised before use; sigwait writes one int.
        let rc = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT] {
                libc::sigaddset(&mut set, s);
            }
            libc::sigwait(&set, &mut sig)
        };
        if rc != 0 {
            continue;
        }
        match sig {
            libc::SIGCHLD => loop {
                // SAFETY: waitpid with a null status pointer only reaps.
                let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
            },
            _ => std::process::exit(0),
        }
    }
}

/// `ip link set lo up` in the new network namespace.
fn loopback_up() {
    // SAFETY: a plain socket call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        fail("socket");
    }
    // SAFETY: ifreq is plain old data; zeroed is a valid value for it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = CString::new("lo").expect("no NUL");
    for (d, s) in req.ifr_name.iter_mut().zip(name.as_bytes_with_nul()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: fd is an open socket and req a valid ifreq naming "lo"; the ioctls read
    // and write only that struct.
    unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) != 0 {
            fail("get flags of lo");
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) != 0 {
            fail("bring lo up");
        }
        libc::close(fd);
    }
}
