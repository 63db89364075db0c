//! The signal that stops a container: the config's (the container's lifecycle.stopSignal),
//! else the image's StopSignal, else SIGTERM (containerd's StopContainer; Linux numbering).

use crate::error::ErrorKind;
use crate::input::ImageConfig;

/// SIGTERM.
pub const SIGTERM: i32 = 15;

const NAMES: [(&str, i32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
];

const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// Parses `SIGQUIT`, `QUIT`, `sigquit`, `3`, `SIGRTMIN+3` or `RTMAX-1` (moby's
/// signal.ParseSignal accepts the same forms).
pub fn parse_signal(s: &str) -> Result<i32, ErrorKind> {
    let unknown = || ErrorKind::UnknownSignal(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=SIGRTMAX).contains(&n) {
            Ok(n)
        } else {
            Err(unknown())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Ok(n);
    }
    let rt = |base: i32, rest: &str| -> Option<i32> {
        let n = match rest {
            "" => base,
            _ if rest.starts_with('+') => base + rest[1..].parse::<i32>().ok()?,
            _ if rest.starts_with('-') => base - rest[1..].parse::<i32>().ok()?,
            _ => return None,
        };
        (SIGRTMIN..=SIGRTMAX).contains(&n).then_some(n)
    };
    let n = if let Some(rest) = name.strip_prefix("RTMIN") {
        rt(SIGRTMIN, rest)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        rt(SIGRTMAX, rest)
    } else {
        None
    };
    n.ok_or_else(unknown)
}

/// The container's stop signal: the config's (the container's `lifecycle.stopSignal`),
/// else the image's, else SIGTERM.
pub fn stop_signal(config: Option<&str>, image: &ImageConfig) -> Result<i32, ErrorKind> {
    let from_config = config.filter(|s| !s.is_empty());
    match from_config.or((!image.stop_signal.is_empty()).then_some(image.stop_signal.as_str())) {
        Some(s) => parse_signal(s),
        None => Ok(SIGTERM),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_forms() {
        let cases = [
            ("SIGTERM", Some(15)),
            ("TERM", Some(15)),
            ("sigquit", Some(3)),
            ("9", Some(9)),
            ("SIGWINCH", Some(28)),
            ("SIGRTMIN", Some(34)),
            ("SIGRTMIN+3", Some(37)),
            ("RTMAX-1", Some(63)),
            ("SIGRTMAX+1", None),
            ("0", None),
            ("65", None),
            ("SIGFOO", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_signal(s).ok(), want, "{s:?}");
        }
    }

    #[test]
    fn config_wins_over_image() {
        let image = ImageConfig {
            stop_signal: "SIGQUIT".into(),
            ..Default::default()
        };
        assert_eq!(stop_signal(None, &ImageConfig::default()).unwrap(), SIGTERM);
        assert_eq!(stop_signal(None, &image).unwrap(), 3);
        assert_eq!(stop_signal(Some(""), &image).unwrap(), 3);
        assert_eq!(stop_signal(Some("SIGUSR1"), &image).unwrap(), 10);
        let bad = ImageConfig {
            stop_signal: "SIGNOPE".into(),
            ..Default::default()
        };
        assert_eq!(
            stop_signal(None, &bad),
            Err(ErrorKind::UnknownSignal("SIGNOPE".into()))
        );
    }
}
