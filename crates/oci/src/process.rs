//! The container's process: arguments, environment and working directory, merged from
//! the container's CRI config (kubelet expanded its references already) and the image
//! config the way containerd merges them.

use std::collections::HashMap;

use crate::error::ErrorKind;
use crate::input::ImageConfig;

/// containerd's default PATH (pkg/oci/spec.go `defaultUnixEnv`), overridden by the image's.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process environment: containerd's default PATH, TERM=xterm for a tty, HOSTNAME,
/// the image's variables, then the container's (containerd
/// internal/cri/server/container_create.go buildLinuxSpec). A later definition replaces
/// an earlier one in place, which is what runc's and crun's setenv loop makes of
/// containerd's list; an image entry without `=` unsets the name.
pub fn process_env(
    image: &ImageConfig,
    container: &[(String, String)],
    tty: bool,
    hostname: &str,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut set = |entry: String, out: &mut Vec<String>| {
        let (name, has_value) = match entry.split_once('=') {
            Some((name, _)) => (name.to_string(), true),
            None => (entry.clone(), false),
        };
        match (index.get(&name), has_value) {
            (Some(&i), true) => out[i] = entry,
            (Some(&i), false) => out[i].clear(),
            (None, true) => {
                index.insert(name, out.len());
                out.push(entry);
            }
            (None, false) => {}
        }
    };
    set(DEFAULT_PATH.to_string(), &mut out);
    if tty {
        set("TERM=xterm".to_string(), &mut out);
    }
    set(format!("HOSTNAME={hostname}"), &mut out);
    for entry in &image.env {
        set(entry.clone(), &mut out);
    }
    for (name, value) in container {
        set(format!("{name}={value}"), &mut out);
    }
    out.retain(|e| !e.is_empty());
    out
}

/// The process arguments as containerd merges the config's with the image's
/// (internal/cri/opts/spec_opts.go WithProcessArgs): `command` replaces ENTRYPOINT and
/// drops CMD, `args` replaces CMD, an ENTRYPOINT of `[""]` counts as none.
pub fn process_args(
    command: &[String],
    args: &[String],
    image: &ImageConfig,
) -> Result<Vec<String>, ErrorKind> {
    let mut command = command.to_vec();
    let mut args = args.to_vec();
    if command.is_empty() {
        if args.is_empty() {
            args = image.cmd.clone();
        }
        let blank_entrypoint = image.entrypoint.len() == 1 && image.entrypoint[0].is_empty();
        if !blank_entrypoint {
            command = image.entrypoint.clone();
        }
    }
    if command.is_empty() && args.is_empty() {
        return Err(ErrorKind::NoCommand);
    }
    command.extend(args);
    Ok(command)
}

/// The working directory: the config's, else the image's, else `/`.
pub fn working_dir(dir: &str, image: &ImageConfig) -> String {
    if !dir.is_empty() {
        dir.to_string()
    } else if !image.working_dir.is_empty() {
        image.working_dir.clone()
    } else {
        "/".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_env_layers_defaults_image_and_container() {
        let image = ImageConfig {
            env: vec![
                "PATH=/image/bin".into(),
                "LANG=C".into(),
                "HOSTNAME=image".into(),
                "GONE".into(),
            ],
            ..Default::default()
        };
        let container = vec![
            ("LANG".to_string(), "en".to_string()),
            ("X".to_string(), "1".to_string()),
        ];
        let cases: [(bool, Vec<&str>); 2] = [
            (
                false,
                vec!["PATH=/image/bin", "HOSTNAME=image", "LANG=en", "X=1"],
            ),
            (
                true,
                vec![
                    "PATH=/image/bin",
                    "TERM=xterm",
                    "HOSTNAME=image",
                    "LANG=en",
                    "X=1",
                ],
            ),
        ];
        for (tty, want) in cases {
            assert_eq!(
                process_env(&image, &container, tty, "pod"),
                want,
                "tty {tty}"
            );
        }
        let bare = process_env(&ImageConfig::default(), &[], false, "web-0");
        assert_eq!(
            bare,
            vec![DEFAULT_PATH.to_string(), "HOSTNAME=web-0".to_string()]
        );
        let unset = ImageConfig {
            env: vec!["PATH".into()],
            ..Default::default()
        };
        assert_eq!(
            process_env(&unset, &[], false, "h"),
            vec!["HOSTNAME=h".to_string()]
        );
    }

    #[test]
    fn args_merge_like_containerd() {
        let image = |ep: &[&str], cmd: &[&str]| ImageConfig {
            entrypoint: ep.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        type Case<'a> = (
            Option<&'a [&'a str]>,
            Option<&'a [&'a str]>,
            ImageConfig,
            Result<Vec<&'a str>, ErrorKind>,
        );
        let cases: Vec<Case> = vec![
            (
                None,
                None,
                image(&["/ep"], &["cmd"]),
                Ok(vec!["/ep", "cmd"]),
            ),
            (
                Some(&["/bin/x"]),
                None,
                image(&["/ep"], &["cmd"]),
                Ok(vec!["/bin/x"]),
            ),
            (
                None,
                Some(&["a1"]),
                image(&["/ep"], &["cmd"]),
                Ok(vec!["/ep", "a1"]),
            ),
            (
                Some(&["/bin/x"]),
                Some(&["a1"]),
                image(&["/ep"], &["cmd"]),
                Ok(vec!["/bin/x", "a1"]),
            ),
            (
                None,
                None,
                image(&[], &["sh", "-c", "x"]),
                Ok(vec!["sh", "-c", "x"]),
            ),
            (
                None,
                Some(&["top"]),
                image(&[""], &["cmd"]),
                Ok(vec!["top"]),
            ),
            (None, None, image(&[""], &["cmd"]), Ok(vec!["cmd"])),
            (Some(&[]), Some(&[]), image(&["/ep"], &[]), Ok(vec!["/ep"])),
            (None, None, image(&[], &[]), Err(ErrorKind::NoCommand)),
            (None, None, image(&[""], &[]), Err(ErrorKind::NoCommand)),
        ];
        for (i, (command, args, image, want)) in cases.into_iter().enumerate() {
            let list = |v: Option<&[&str]>| -> Vec<String> {
                v.into_iter().flatten().map(|s| s.to_string()).collect()
            };
            let got = process_args(&list(command), &list(args), &image);
            let want = want.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn working_dir_precedence() {
        let image = ImageConfig {
            working_dir: "/srv".into(),
            ..Default::default()
        };
        assert_eq!(working_dir("", &image), "/srv");
        assert_eq!(working_dir("", &ImageConfig::default()), "/");
        assert_eq!(working_dir("/work", &image), "/work");
    }
}
