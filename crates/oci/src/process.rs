//! The container's process: arguments, environment and working directory, merged from
//! the image config and the container the way kubelet and containerd merge them.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Container;

use crate::error::ErrorKind;
use crate::input::{EnvVar, ImageConfig};

/// containerd's default PATH (pkg/oci/spec.go `defaultUnixEnv`), overridden by the image's.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Expands `$(VAR)` references the way kubelet does
/// (third_party/forked/golang/expansion/expand.go): `$$` is an escaped `$`, a reference
/// to an unknown variable stays as written, a `$` not followed by `(` or `$` is kept,
/// and an unclosed `$(` is kept.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            // `advance` counts the bytes consumed after the `$`.
            let advance = match rest.chars().next() {
                Some('$') => {
                    out.push('$');
                    1
                }
                Some('(') => match rest[1..].find(')') {
                    Some(end) => {
                        let name = &rest[1..1 + end];
                        match lookup(name) {
                            Some(value) => out.push_str(&value),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        end + 2
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                Some(c) => {
                    out.push('$');
                    out.push(c);
                    c.len_utf8()
                }
                None => unreachable!("cursor + 1 < len"),
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint.min(input.len())..]);
    out
}

/// The literal environment of a container that uses no `valueFrom` or `envFrom`
/// (tests, and pods that need no resolution). Fails on the first reference.
pub fn literal_env(container: &Container) -> Result<Vec<EnvVar>, ErrorKind> {
    if container.env_from.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(ErrorKind::UnresolvedEnv("envFrom[0]".to_string()));
    }
    let mut out = Vec::new();
    for var in container.env.iter().flatten() {
        if var.value_from.is_some() {
            return Err(ErrorKind::UnresolvedEnv(var.name.clone()));
        }
        out.push(EnvVar::literal(
            &var.name,
            var.value.clone().unwrap_or_default(),
        ));
    }
    Ok(out)
}

/// The container's own variables after kubelet's expansion (kubelet
/// pkg/kubelet/kubelet_pods.go makeEnvironmentVariables): each literal value is
/// expanded against the variables defined before it; a name defined twice keeps its
/// first position and its last value. Image variables take no part in expansion.
pub fn container_env(env: &[EnvVar]) -> Vec<(String, String)> {
    let mut defined: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<(String, String)> = Vec::new();
    for var in env {
        let value = if var.expand && !var.value.is_empty() {
            expand(&var.value, |name| {
                defined.get(name).map(|&i| out[i].1.clone())
            })
        } else {
            var.value.clone()
        };
        match defined.get(&var.name) {
            Some(&i) => out[i].1 = value,
            None => {
                defined.insert(var.name.clone(), out.len());
                out.push((var.name.clone(), value));
            }
        }
    }
    out
}

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

/// The process arguments: kubelet expands `$(VAR)` in command and args against the
/// container's variables (pkg/kubelet/container/helpers.go
/// ExpandContainerCommandAndArgs); containerd then merges with the image
/// (internal/cri/opts/spec_opts.go WithProcessArgs): `command` replaces ENTRYPOINT and
/// drops CMD, `args` replaces CMD, an ENTRYPOINT of `[""]` counts as none.
pub fn process_args(
    container: &Container,
    image: &ImageConfig,
    env: &[(String, String)],
) -> Result<Vec<String>, ErrorKind> {
    let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lookup = |name: &str| vars.get(name).map(|v| v.to_string());
    let mut command: Vec<String> = container
        .command
        .iter()
        .flatten()
        .map(|c| expand(c, lookup))
        .collect();
    let mut args: Vec<String> = container
        .args
        .iter()
        .flatten()
        .map(|a| expand(a, lookup))
        .collect();
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

/// The working directory: the container's, else the image's, else `/`.
pub fn working_dir(container: &Container, image: &ImageConfig) -> String {
    match container.working_dir.as_deref() {
        Some(dir) if !dir.is_empty() => dir.to_string(),
        _ if !image.working_dir.is_empty() => image.working_dir.clone(),
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn expansion_follows_kubelet() {
        let ctx = [("VAR_A", "A"), ("VAR_B", "B"), ("EMPTY", ""), ("UTF", "ü")];
        // Cases from kubelet's expand_test.go, plus UTF-8 around operators.
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_A)___", "___A___"),
            ("$(VAR_A)-$(VAR_B)", "A-B"),
            ("$(VAR_A)$(VAR_B)", "AB"),
            ("$(EMPTY)", ""),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$$", "$"),
            ("$", "$"),
            ("foo$", "foo$"),
            ("$VAR_A", "$VAR_A"),
            ("$(VAR_A", "$(VAR_A"),
            ("$(", "$("),
            ("$()", "$()"),
            ("$(VAR_A)$", "A$"),
            ("$ü$(UTF)", "$üü"),
            ("ä$(VAR_A)ö", "äAö"),
            ("no refs", "no refs"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, vars(&ctx)), want, "input {input:?}");
        }
    }

    #[test]
    fn container_env_expands_from_earlier_vars_only() {
        let env = vec![
            EnvVar::literal("A", "a"),
            EnvVar::literal("B", "$(A)-$(C)"),
            EnvVar::literal("C", "c"),
            EnvVar::resolved("D", "$(A)"),
            EnvVar::literal("A", "again"),
            EnvVar::literal("E", "$(A)"),
        ];
        let got = container_env(&env);
        let want = [
            ("A", "again"),
            ("B", "a-$(C)"),
            ("C", "c"),
            ("D", "$(A)"),
            ("E", "again"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

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

    fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Container {
            name: "c".into(),
            command: command.map(list),
            args: args.map(list),
            ..Default::default()
        }
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
            let got = process_args(&container(command, args), &image, &[]);
            let want = want.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn command_and_args_are_expanded_but_image_args_are_not() {
        let env = vec![
            ("MSG".to_string(), "hi".to_string()),
            ("LATE".to_string(), "z".to_string()),
        ];
        let c = container(
            Some(&["echo", "$(MSG)", "$$(MSG)"]),
            Some(&["$(LATE)", "$(NOPE)"]),
        );
        let got = process_args(&c, &ImageConfig::default(), &env).unwrap();
        assert_eq!(got, vec!["echo", "hi", "$(MSG)", "z", "$(NOPE)"]);
        let image = ImageConfig {
            cmd: vec!["$(MSG)".into()],
            ..Default::default()
        };
        assert_eq!(
            process_args(&container(None, None), &image, &env).unwrap(),
            vec!["$(MSG)"]
        );
    }

    #[test]
    fn working_dir_precedence() {
        let mut c = container(None, None);
        let image = ImageConfig {
            working_dir: "/srv".into(),
            ..Default::default()
        };
        assert_eq!(working_dir(&c, &image), "/srv");
        assert_eq!(working_dir(&c, &ImageConfig::default()), "/");
        c.working_dir = Some("/work".into());
        assert_eq!(working_dir(&c, &image), "/work");
        c.working_dir = Some(String::new());
        assert_eq!(working_dir(&c, &image), "/srv");
    }

    #[test]
    fn literal_env_refuses_references() {
        use k8s_openapi::api::core::v1::{EnvVar as K8sEnv, EnvVarSource};
        let mut c = container(None, None);
        c.env = Some(vec![K8sEnv {
            name: "A".into(),
            value: Some("1".into()),
            ..Default::default()
        }]);
        assert_eq!(literal_env(&c).unwrap(), vec![EnvVar::literal("A", "1")]);
        c.env.as_mut().unwrap().push(K8sEnv {
            name: "S".into(),
            value_from: Some(EnvVarSource::default()),
            ..Default::default()
        });
        assert_eq!(literal_env(&c), Err(ErrorKind::UnresolvedEnv("S".into())));
    }
}
