use super::*;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
    daemon:x:1:1::/:/sbin/nologin\n\
    \n\
    nginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin\n\
    app:x:1000:1000::/home/app:/bin/sh\n\
    odd:x:notanumber:7::/:/bin/sh\n\
    big:x:4294967295:0::/:/bin/sh\n";
const GROUP: &str = "root:x:0:\n\
    daemon:x:1:\n\
    nginx:x:101:nginx\n\
    audio:x:29:app,nginx\n\
    video:x:44: app \n\
    app:x:1000:app\n\
    staff:x:50:\n";

fn files() -> UserFiles {
    UserFiles {
        passwd: Some(PASSWD.into()),
        group: Some(GROUP.into()),
    }
}

/// The config's user and group (runAsNonRoot is kubelet's to check, before:
/// `_non_root` changes nothing here).
fn sec(
    user: Option<i64>,
    group: Option<i64>,
    _non_root: Option<bool>,
) -> LinuxContainerSecurityContext {
    LinuxContainerSecurityContext {
        run_as_user: user,
        run_as_group: group,
        ..Default::default()
    }
}

fn image(user: &str) -> ImageConfig {
    ImageConfig {
        user: user.into(),
        ..Default::default()
    }
}

fn ok(uid: u32, gid: u32, gids: &[u32]) -> Result<ResolvedUser, ErrorKind> {
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: gids.to_vec(),
    })
}

#[test]
fn parsing_is_runc_like() {
    let p = parse_passwd(PASSWD);
    assert_eq!(p.len(), 6);
    assert_eq!(
        p[2],
        PasswdEntry {
            name: "nginx".into(),
            uid: 101,
            gid: 101
        }
    );
    assert_eq!(p[4].uid, 0, "a uid that does not parse reads as 0");
    let g = parse_group(GROUP);
    assert_eq!(g[3].members, vec!["app", "nginx"]);
    assert_eq!(g[4].members, vec!["app"]);
    assert!(g[0].members.is_empty());
}

#[test]
fn resolution_table() {
    let not_found = |user: &str, reason: &str| {
        Err(ErrorKind::UserNotFound {
            user: user.into(),
            image: "img".into(),
            reason: reason.into(),
        })
    };
    type Case<'a> = (
        &'a str,
        LinuxContainerSecurityContext,
        &'a str,
        bool,
        UserFiles,
        Result<ResolvedUser, ErrorKind>,
    );
    let cases: Vec<Case> = vec![
        (
            "no user at all: root",
            sec(None, None, None),
            "",
            false,
            files(),
            ok(0, 0, &[0]),
        ),
        (
            "numeric image uid in passwd",
            sec(None, None, None),
            "1000",
            false,
            files(),
            ok(1000, 1000, &[29, 44, 1000]),
        ),
        (
            "numeric image uid not in passwd: gid 0",
            sec(None, None, None),
            "4242",
            false,
            files(),
            ok(4242, 0, &[0]),
        ),
        (
            "image name",
            sec(None, None, None),
            "nginx",
            false,
            files(),
            ok(101, 101, &[29, 101]),
        ),
        (
            "image name missing",
            sec(None, None, None),
            "ghost",
            false,
            files(),
            not_found("ghost", "no matching entries in passwd file"),
        ),
        (
            "image name, no passwd",
            sec(None, None, None),
            "app",
            false,
            UserFiles::default(),
            not_found("app", "the image has no /etc/passwd"),
        ),
        (
            "uid without passwd",
            sec(None, None, None),
            "7",
            false,
            UserFiles::default(),
            ok(7, 0, &[0]),
        ),
        (
            "runAsUser wins over image",
            sec(Some(101), None, None),
            "app",
            false,
            files(),
            ok(101, 101, &[29, 101]),
        ),
        (
            "runAsUser + runAsGroup",
            sec(Some(1000), Some(5000), None),
            "",
            false,
            files(),
            ok(1000, 5000, &[29, 44, 5000]),
        ),
        (
            "runAsGroup with image name",
            sec(None, Some(50), None),
            "nginx",
            false,
            files(),
            ok(101, 50, &[29, 50]),
        ),
        (
            "runAsGroup alone: image uid 0",
            sec(None, Some(50), None),
            "",
            false,
            files(),
            ok(0, 50, &[50]),
        ),
        (
            "image group ignored like kubelet",
            sec(None, None, None),
            "1000:50",
            false,
            files(),
            ok(1000, 1000, &[29, 44, 1000]),
        ),
        (
            "image group honoured (numeric)",
            sec(None, None, None),
            "1000:50",
            true,
            files(),
            ok(1000, 50, &[29, 44, 50]),
        ),
        (
            "image group honoured (name)",
            sec(None, None, None),
            "app:staff",
            true,
            files(),
            ok(1000, 50, &[29, 44, 50]),
        ),
        (
            "image group name missing",
            sec(None, None, None),
            "app:nogroup",
            true,
            files(),
            Err(ErrorKind::GroupNotFound {
                group: "nogroup".into(),
                image: "img".into(),
                reason: "no matching entries in group file".into(),
            }),
        ),
        (
            "runAsUser drops image group",
            sec(Some(101), None, None),
            "app:staff",
            true,
            files(),
            ok(101, 101, &[29, 101]),
        ),
        (
            "uid out of range",
            sec(Some(1 << 40), None, None),
            "",
            false,
            files(),
            Err(ErrorKind::InvalidUser {
                user: "1099511627776".into(),
                reason: "uid out of range".into(),
            }),
        ),
        (
            "name whose uid is out of range",
            sec(None, None, None),
            "big",
            false,
            files(),
            Err(ErrorKind::InvalidUser {
                user: "big".into(),
                reason: "uid out of range".into(),
            }),
        ),
        // runAsNonRoot (kubelet verifyRunAsNonRoot).
        (
            "nonroot: runAsUser set",
            sec(Some(1000), None, Some(true)),
            "",
            false,
            files(),
            ok(1000, 1000, &[29, 44, 1000]),
        ),
        (
            "nonroot: image uid",
            sec(None, None, Some(true)),
            "101",
            false,
            files(),
            ok(101, 101, &[29, 101]),
        ),
        (
            "nonroot false: root fine",
            sec(None, None, Some(false)),
            "",
            false,
            files(),
            ok(0, 0, &[0]),
        ),
    ];
    for (name, sec, user, honor, files, want) in cases {
        let got = resolve_user(&sec, &image(user), "img", &files, honor);
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn supplemental_groups_and_the_policy() {
    let sc = |policy| LinuxContainerSecurityContext {
        // kubelet's: the pod's fsGroup, then its supplementalGroups.
        supplemental_groups: vec![2000, 3000, 29, 2000],
        supplemental_groups_policy: policy,
        ..Default::default()
    };
    let resolve = |policy| resolve_user(&sc(policy), &image("app"), "img", &files(), false);
    assert_eq!(
        resolve(SupplementalGroupsPolicy::Merge),
        ok(1000, 1000, &[29, 44, 1000, 2000, 3000])
    );
    assert_eq!(
        resolve(SupplementalGroupsPolicy::Strict),
        ok(1000, 1000, &[29, 1000, 2000, 3000])
    );
}

#[test]
fn a_user_name_in_the_config_is_resolved() {
    let sc = LinuxContainerSecurityContext {
        run_as_username: "nginx".into(),
        ..Default::default()
    };
    assert_eq!(
        resolve_user(&sc, &image("app"), "img", &files(), false),
        ok(101, 101, &[29, 101])
    );
}

#[test]
fn error_messages_name_user_and_image() {
    let err = resolve_user(
        &sec(None, None, None),
        &image("ghost"),
        "docker.io/library/nginx:1.25",
        &files(),
        false,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(err, "unable to find user ghost in image docker.io/library/nginx:1.25: no matching entries in passwd file");
}

#[test]
fn read_stays_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let outside = dir.path().join("secret");
    std::fs::write(&outside, "host:x:0:0::/:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "g:x:5:\n").unwrap();
    // An absolute symlink resolves inside the root, where nothing is: no passwd.
    std::os::unix::fs::symlink(&outside, root.join("etc/passwd")).unwrap();
    let f = UserFiles::read(&root).unwrap();
    assert_eq!(f.passwd, None);
    assert_eq!(f.group.as_deref(), Some("g:x:5:\n"));
    // A relative symlink that climbs out stops at the root too.
    std::fs::remove_file(root.join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink("../../secret", root.join("etc/passwd")).unwrap();
    assert_eq!(UserFiles::read(&root).unwrap().passwd, None);
    // A symlink within the root is followed.
    std::fs::remove_file(root.join("etc/passwd")).unwrap();
    std::fs::write(root.join("etc/passwd.real"), "me:x:5:5::/:/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd.real", root.join("etc/passwd")).unwrap();
    assert_eq!(
        UserFiles::read(&root).unwrap().passwd.as_deref(),
        Some("me:x:5:5::/:/bin/sh\n")
    );
    // A directory where the file should be reads as absent; a missing root is an error.
    std::fs::remove_file(root.join("etc/group")).unwrap();
    std::fs::create_dir(root.join("etc/group")).unwrap();
    assert_eq!(UserFiles::read(&root).unwrap().group, None);
    assert!(UserFiles::read(&dir.path().join("nope")).is_err());
}
