//! podrun-monitor: the per-pod monitor as a binary of its own, so each pod's
//! copy costs little (no tokio, no clap, no image code).
//!
//! Usage:
//!   `podrun-monitor --plan FILE`
//!     run the pod of the plan (`podrun_runtime::monitor::run_monitor`):
//!     create its sandbox and take requests on `<run dir>/monitor.sock`
//!     (`podrun_runtime::monitor::control`: start, stop, remove a container)
//!     until SIGTERM or a `shutdown` request; exit 1 with `Error: …` on
//!     stderr when it fails.
//!   `podrun-monitor cleanup --plan FILE`
//!     remove what a monitor that died left of its pod (containers, pause
//!     process, namespace pins, cgroups); exit 1 listing every failure.
//!   `podrun-monitor exec --plan FILE --id CONTAINER_ID [--tty] -- CMD [ARG…]`
//!     run CMD in the running container through the plan's runtime, with our
//!     stdin, stdout and stderr, and exit with its exit code.
//!
//! podrun's warnings go to stderr as `LEVEL target: message`. libcontainer's
//! own events are left out (its failures come back as errors, said once):
//! `PODRUN_MONITOR_LOG=error|warn|info|debug|trace` shows everything from that
//! level up.

use std::path::PathBuf;

use podrun_runtime::monitor::{run_monitor, PodPlan};

const USAGE: &str = "usage: podrun-monitor --plan FILE\n       \
                     podrun-monitor cleanup --plan FILE\n       \
                     podrun-monitor exec --plan FILE --id CONTAINER_ID [--tty] -- CMD [ARG...]";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Cmd {
    Run {
        plan: PathBuf,
    },
    Cleanup {
        plan: PathBuf,
    },
    Exec {
        plan: PathBuf,
        id: String,
        tty: bool,
        args: Vec<String>,
    },
}

fn parse(argv: &[String]) -> Result<Cmd, String> {
    let (exec, cleanup, rest) = match argv.first().map(String::as_str) {
        Some("exec") => (true, false, &argv[1..]),
        Some("cleanup") => (false, true, &argv[1..]),
        _ => (false, false, argv),
    };
    let mut plan = None;
    let mut id = None;
    let mut tty = false;
    let mut args = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--plan" => plan = Some(PathBuf::from(value("--plan")?)),
            "--id" if exec => id = Some(value("--id")?),
            "--tty" | "-t" if exec => tty = true,
            "--" if exec => {
                args = it.cloned().collect();
                break;
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let plan = plan.ok_or("--plan is required")?;
    if cleanup {
        return Ok(Cmd::Cleanup { plan });
    }
    if !exec {
        return Ok(Cmd::Run { plan });
    }
    let id = id.ok_or("exec: --id is required")?;
    if args.is_empty() {
        return Err("exec: a command is required after --".into());
    }
    Ok(Cmd::Exec {
        plan,
        id,
        tty,
        args,
    })
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("Error: {msg}");
    std::process::exit(1)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "--help" || a == "-h") && !argv.iter().any(|a| a == "--") {
        println!("{USAGE}");
        return;
    }
    let cmd = parse(&argv).unwrap_or_else(|e| {
        eprintln!("podrun-monitor: {e}\n{USAGE}");
        std::process::exit(2)
    });
    log::init();
    match cmd {
        Cmd::Run { plan } => {
            // Single-threaded, as it must stay: the runtime backend forks.
            let result = PodPlan::read(&plan).and_then(|plan| run_monitor(&plan));
            if let Err(e) = result {
                fail(e);
            }
        }
        Cmd::Cleanup { plan } => {
            let plan = PodPlan::read(&plan).unwrap_or_else(|e| fail(e));
            let errors = podrun_runtime::monitor::clean_up_after(&plan);
            if !errors.is_empty() {
                fail(format!(
                    "pod {}: cleanup: {}",
                    plan.pod_id,
                    errors.join("; ")
                ));
            }
        }
        Cmd::Exec {
            plan,
            id,
            tty,
            args,
        } => {
            let plan = PodPlan::read(&plan).unwrap_or_else(|e| fail(e));
            match plan.backend().exec(&id, &args, tty) {
                Ok(code) => std::process::exit(code),
                Err(e) => fail(e),
            }
        }
    }
}

/// A tracing subscriber that costs next to nothing: events at or above a
/// level, one line each on stderr; no spans.
mod log {
    use std::fmt::Write as _;
    use std::io::Write as _;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    struct Stderr {
        max: Level,
        /// Events of other crates than podrun's too.
        all: bool,
    }

    pub fn init() {
        let asked = std::env::var("PODRUN_MONITOR_LOG").ok();
        let max = match asked.as_deref() {
            Some("trace") => Level::TRACE,
            Some("debug") => Level::DEBUG,
            Some("info") => Level::INFO,
            Some("error") => Level::ERROR,
            _ => Level::WARN,
        };
        let all = asked.is_some();
        let _ = tracing::subscriber::set_global_default(Stderr { max, all });
    }

    struct Line(String);

    impl Visit for Line {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                let _ = write!(self.0, " {value:?}");
            } else {
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }
    }

    impl Subscriber for Stderr {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            *metadata.level() <= self.max && (self.all || metadata.target().starts_with("podrun"))
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let m = event.metadata();
            let mut line = Line(format!("{} {}:", m.level(), m.target()));
            event.record(&mut line);
            line.0.push('\n');
            let _ = std::io::stderr().write_all(line.0.as_bytes());
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_command_line_is_parsed() {
        assert_eq!(
            parse(&argv("--plan /p.json")),
            Ok(Cmd::Run {
                plan: "/p.json".into()
            })
        );
        assert_eq!(
            parse(&argv("exec --plan /p --id c1 --tty -- sh -c --id")),
            Ok(Cmd::Exec {
                plan: "/p".into(),
                id: "c1".into(),
                tty: true,
                args: argv("sh -c --id"),
            })
        );
        assert_eq!(
            parse(&argv("cleanup --plan /p")),
            Ok(Cmd::Cleanup { plan: "/p".into() })
        );
        assert_eq!(
            parse(&argv("exec --id c1 --plan /p -- true")),
            Ok(Cmd::Exec {
                plan: "/p".into(),
                id: "c1".into(),
                tty: false,
                args: argv("true"),
            })
        );
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert_eq!(parse(&argv("")), Err("--plan is required".into()));
        assert_eq!(parse(&argv("--plan")), Err("--plan needs a value".into()));
        assert_eq!(
            parse(&argv("--plan /p --id c")),
            Err("unexpected argument \"--id\"".into())
        );
        assert_eq!(
            parse(&argv("exec --plan /p -- true")),
            Err("exec: --id is required".into())
        );
        assert_eq!(
            parse(&argv("exec --plan /p --id c --")),
            Err("exec: a command is required after --".into())
        );
    }
}
