//! kubelet's expansion of `$(VAR)` references in a container's environment,
//! command and args (pkg/kubelet/kubelet_pods.go makeEnvironmentVariables,
//! pkg/kubelet/container/helpers.go ExpandContainerCommandAndArgs): the
//! runtime gets the values expanded.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Container;

use super::ConfigError;

/// One environment variable of the container, after the pod manager resolved
/// `valueFrom` and `envFrom`. Order matters: entries come in the order kubelet
/// defines them (`envFrom` sources first, then `env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// The variable's name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Whether `$(VAR)` references in the value are expanded: true for a literal
    /// `value:` of the pod spec, false for values that came from a ConfigMap, a Secret,
    /// the downward API or `envFrom` (kubelet never expands those).
    pub expand: bool,
}

impl EnvVar {
    /// A literal `value:` from the pod spec (expanded).
    pub fn literal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            expand: true,
        }
    }

    /// A value resolved from a reference (not expanded).
    pub fn resolved(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            expand: false,
        }
    }
}

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

/// A volumeMount's `subPathExpr` expanded against the container's environment
/// (`env`: its variables after their own expansion), as kubelet's
/// ExpandContainerVolumeMounts (pkg/kubelet/container/helpers.go): only the
/// container's variables, `$$` an escaped `$`; a reference to a variable that is
/// missing or empty fails with kubelet's `missing value for A, B` (sorted).
pub fn sub_path_expr(expr: &str, env: &[(String, String)]) -> Result<String, String> {
    let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let expanded = expand(expr, |name| {
        // The last definition wins, as in kubelet's envVarsToMap.
        let value = env
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone());
        if value.as_deref().unwrap_or("").is_empty() {
            missing.borrow_mut().insert(name.to_string());
        }
        Some(value.unwrap_or_default())
    });
    let missing = missing.into_inner();
    if missing.is_empty() {
        Ok(expanded)
    } else {
        Err(format!(
            "missing value for {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        ))
    }
}

/// The literal environment of a container that uses no `valueFrom` or `envFrom`
/// (tests, and pods that need no resolution). Fails on the first reference.
pub fn literal_env(container: &Container) -> Result<Vec<EnvVar>, ConfigError> {
    if container.env_from.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(ConfigError::UnresolvedEnv("envFrom[0]".to_string()));
    }
    let mut out = Vec::new();
    for var in container.env.iter().flatten() {
        if var.value_from.is_some() {
            return Err(ConfigError::UnresolvedEnv(var.name.clone()));
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

/// `command` and `args` with `$(VAR)` expanded against the container's
/// variables (`env`, after [`container_env`]).
pub fn expand_command(c: &Container, env: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lookup = |name: &str| vars.get(name).map(|v| v.to_string());
    let all = |list: &Option<Vec<String>>| -> Vec<String> {
        list.iter().flatten().map(|s| expand(s, lookup)).collect()
    };
    (all(&c.command), all(&c.args))
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
    fn command_and_args_are_expanded() {
        let env = vec![
            ("MSG".to_string(), "hi".to_string()),
            ("LATE".to_string(), "z".to_string()),
        ];
        let list = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let c = Container {
            name: "c".into(),
            command: list(&["echo", "$(MSG)", "$$(MSG)"]),
            args: list(&["$(LATE)", "$(NOPE)"]),
            ..Default::default()
        };
        let (command, args) = expand_command(&c, &env);
        assert_eq!(command, ["echo", "hi", "$(MSG)"]);
        assert_eq!(args, ["z", "$(NOPE)"]);
    }

    #[test]
    fn literal_env_refuses_references() {
        use k8s_openapi::api::core::v1::{EnvVar as K8sEnv, EnvVarSource};
        let mut c = Container {
            name: "c".into(),
            ..Default::default()
        };
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
        assert_eq!(literal_env(&c), Err(ConfigError::UnresolvedEnv("S".into())));
    }
}

#[cfg(test)]
mod sub_path_expr_tests {
    use super::sub_path_expr;

    fn env() -> Vec<(String, String)> {
        [
            ("POD", "web-1"),
            ("NS", "default"),
            ("EMPTY", ""),
            ("POD", "web-2"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn sub_path_expr_expands_as_kubelet() {
        let env = env();
        for (expr, want) in [
            ("$(POD)", Ok("web-2".to_string())),
            ("logs/$(NS)/$(POD)", Ok("logs/default/web-2".to_string())),
            ("$$(POD)", Ok("$(POD)".to_string())),
            ("a$$b", Ok("a$b".to_string())),
            ("plain", Ok("plain".to_string())),
            (
                "$(NOPE)/$(EMPTY)",
                Err("missing value for EMPTY, NOPE".to_string()),
            ),
            ("$(ZED)$(A)", Err("missing value for A, ZED".to_string())),
        ] {
            assert_eq!(sub_path_expr(expr, &env), want, "{expr}");
        }
    }
}
