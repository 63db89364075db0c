//! Layer unpacking into overlay form, run as root: metadata, whiteouts,
//! replacement rules and hostile layers.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use podrun_image::unpack::{unpack_layer, Refusal, UnpackError, UnpackStats};
use tar::{EntryType, Header};

/// Builds a layer tar in memory. Names and link targets are written raw so
/// hostile ones (`..`, absolute) can be expressed.
struct Layer(tar::Builder<Vec<u8>>);

/// Per-entry metadata for [`Layer`].
#[derive(Clone, Copy)]
struct M {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

const DEF: M = M {
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: 1_600_000_000,
};

fn m(mode: u32, uid: u64, gid: u64, mtime: u64) -> M {
    M {
        mode,
        uid,
        gid,
        mtime,
    }
}

impl Layer {
    fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn raw(&mut self, kind: EntryType, path: &str, link: &str, meta: M, data: &[u8]) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.mode);
        h.set_uid(meta.uid);
        h.set_gid(meta.gid);
        h.set_mtime(meta.mtime);
        h.set_size(data.len() as u64);
        if path.len() <= 100 {
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        } else {
            // Long names travel in a pax header.
            self.0
                .append_pax_extensions([("path", path.as_bytes())])
                .unwrap();
        }
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(&mut self, path: &str, data: &[u8], meta: M) -> &mut Self {
        self.raw(EntryType::Regular, path, "", meta, data)
    }

    fn dir(&mut self, path: &str, meta: M) -> &mut Self {
        self.raw(EntryType::Directory, path, "", meta, b"")
    }

    fn symlink(&mut self, path: &str, target: &str, meta: M) -> &mut Self {
        self.raw(EntryType::Symlink, path, target, meta, b"")
    }

    fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(EntryType::Link, path, target, DEF, b"")
    }

    fn device(
        &mut self,
        kind: EntryType,
        path: &str,
        major: u32,
        minor: u32,
        meta: M,
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.mode);
        h.set_uid(meta.uid);
        h.set_gid(meta.gid);
        h.set_mtime(meta.mtime);
        h.set_size(0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        self.0.append(&h, &b""[..]).unwrap();
        self
    }

    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.0
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    fn bytes(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

/// A base temp dir holding the destination, an empty sentinel directory that
/// hostile symlinks point at, and a directory with one file to steal.
struct Env {
    _base: tempfile::TempDir,
    base: PathBuf,
    dest: PathBuf,
    sentinel: PathBuf,
    secrets: PathBuf,
}

impl Env {
    fn new() -> Self {
        let base_dir = tempfile::tempdir().unwrap();
        let base = base_dir.path().to_owned();
        let dest = base.join("dest");
        let sentinel = base.join("sentinel");
        let secrets = base.join("secrets");
        fs::create_dir(&dest).unwrap();
        fs::create_dir(&sentinel).unwrap();
        fs::create_dir(&secrets).unwrap();
        fs::write(secrets.join("secret"), b"s3cret").unwrap();
        Env {
            _base: base_dir,
            base,
            dest,
            sentinel,
            secrets,
        }
    }

    fn unpack(&self, layer: &mut Layer) -> Result<UnpackStats, UnpackError> {
        unpack_layer(&layer.bytes()[..], &self.dest)
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dest.join(rel)
    }

    fn meta(&self, rel: &str) -> fs::Metadata {
        fs::symlink_metadata(self.p(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Nothing outside `dest` was created or changed.
    fn assert_outside_clean(&self) {
        let mut names: Vec<_> = fs::read_dir(&self.base)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["dest", "secrets", "sentinel"]);
        assert_eq!(
            fs::read_dir(&self.sentinel).unwrap().count(),
            0,
            "sentinel not empty"
        );
        let sm = fs::symlink_metadata(&self.sentinel).unwrap();
        assert_eq!(sm.mode() & 0o7777, 0o755, "sentinel mode changed");
        assert_eq!((sm.uid(), sm.gid()), (0, 0), "sentinel owner changed");
        assert_eq!(xattr(&self.sentinel, "trusted.overlay.opaque"), None);
        let secret = fs::symlink_metadata(self.secrets.join("secret")).unwrap();
        assert_eq!(secret.nlink(), 1, "secret was hard linked");
        assert_eq!(fs::read_dir(&self.secrets).unwrap().count(), 1);
    }
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(rustix::io::Errno::NODATA) => None,
        Err(e) => panic!("getxattr {}: {e}", path.display()),
    }
}

fn refusal(r: Result<UnpackStats, UnpackError>) -> (String, Refusal, String) {
    match r {
        Err(e @ UnpackError::Refused { .. }) => {
            let msg = e.to_string();
            let UnpackError::Refused { entry, refusal } = e else {
                unreachable!()
            };
            (entry, refusal, msg)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn mtime(md: &fs::Metadata) -> (i64, i64) {
    (md.mtime(), md.mtime_nsec())
}

#[test]
fn regular_file_owner_mode_times_and_stats() {
    let env = Env::new();
    let stats = env
        .unpack(
            Layer::new()
                .file("bin/su", b"suid!", m(0o4755, 1234, 5678, 1_000_000))
                .file("./sgid", b"", m(0o2710, 0, 42, 2_000_000))
                .file("sticky", b"0123456789", m(0o1777, 7, 7, 3)),
        )
        .unwrap();
    assert_eq!(
        stats,
        UnpackStats {
            entries: 3,
            bytes: 15
        }
    );

    let md = env.meta("bin/su");
    assert!(md.file_type().is_file());
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    assert_eq!(md.mode() & 0o7777, 0o4755, "setuid must survive chown");
    assert_eq!(mtime(&md), (1_000_000, 0));
    assert_eq!(md.atime(), 1_000_000, "atime defaults to mtime");
    assert_eq!(fs::read(env.p("bin/su")).unwrap(), b"suid!");

    let md = env.meta("sgid");
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (0, 42, 0o2710));
    let md = env.meta("sticky");
    assert_eq!((md.uid(), md.mode() & 0o7777, md.size()), (7, 0o1777, 10));
}

#[test]
fn pax_times_and_xattrs() {
    let env = Env::new();
    env.unpack(
        Layer::new()
            .pax(&[
                ("mtime", b"1700000000.123456789"),
                ("atime", b"1600000000.5"),
                ("SCHILY.xattr.user.color", b"blue"),
                ("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
                ("SCHILY.xattr.trusted.overlay.redirect", b"/elsewhere"),
            ])
            .file("f", b"x", m(0o755, 1000, 1000, 5))
            .pax(&[("SCHILY.xattr.user.dir", b"yes")])
            .dir("d", m(0o700, 3, 4, 6))
            .pax(&[("SCHILY.xattr.trusted.sym", b"link")])
            .symlink("s", "f", m(0o777, 0, 0, 7)),
    )
    .unwrap();
    let md = env.meta("f");
    assert_eq!(mtime(&md), (1_700_000_000, 123_456_789));
    assert_eq!((md.atime(), md.atime_nsec()), (1_600_000_000, 500_000_000));
    assert_eq!(
        xattr(&env.p("f"), "user.color").as_deref(),
        Some(&b"blue"[..])
    );
    assert!(
        xattr(&env.p("f"), "security.capability").is_some(),
        "file capability kept after chown"
    );
    assert_eq!(
        xattr(&env.p("f"), "trusted.overlay.redirect"),
        None,
        "overlay xattrs come only from whiteouts"
    );
    assert_eq!(xattr(&env.p("d"), "user.dir").as_deref(), Some(&b"yes"[..]));
    assert_eq!(
        xattr(&env.p("s"), "trusted.sym").as_deref(),
        Some(&b"link"[..])
    );
}

#[test]
fn directory_metadata_is_applied_last() {
    let env = Env::new();
    env.unpack(
        Layer::new()
            .dir("./", m(0o711, 0, 0, 11))
            .dir("d/", m(0o750, 7, 8, 12_345))
            .dir("d/sub", m(0o500, 9, 9, 222))
            .file("d/sub/f", b"data", DEF)
            .file("d/g", b"", DEF),
    )
    .unwrap();
    let md = env.meta("d");
    assert!(md.is_dir());
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (7, 8, 0o750));
    assert_eq!(
        mtime(&md),
        (12_345, 0),
        "children must not bump the dir mtime"
    );
    let md = env.meta("d/sub");
    assert_eq!((md.uid(), md.mode() & 0o7777, md.mtime()), (9, 0o500, 222));
    let root = fs::metadata(&env.dest).unwrap();
    assert_eq!((root.mode() & 0o7777, root.mtime()), (0o711, 11));
}

#[test]
fn implicit_parents_are_root_0755() {
    let env = Env::new();
    env.unpack(Layer::new().file("a/b/c/file", b"x", m(0o600, 5, 5, 1)))
        .unwrap();
    for d in ["a", "a/b", "a/b/c"] {
        let md = env.meta(d);
        assert!(md.is_dir(), "{d}");
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (0, 0, 0o755),
            "{d}"
        );
    }
    let md = env.meta("a/b/c/file");
    assert_eq!((md.uid(), md.mode() & 0o7777), (5, 0o600));
}

#[test]
fn symlinks_keep_target_owner_and_times() {
    let env = Env::new();
    let outside = env.sentinel.to_str().unwrap().to_owned();
    env.unpack(
        Layer::new()
            .symlink("abs", &outside, m(0o777, 42, 43, 777))
            .symlink("dangling", "../../../nowhere", m(0o777, 0, 0, 888)),
    )
    .unwrap();
    let md = env.meta("abs");
    assert!(md.file_type().is_symlink());
    assert_eq!(fs::read_link(env.p("abs")).unwrap(), env.sentinel);
    assert_eq!((md.uid(), md.gid(), md.mtime()), (42, 43, 777));
    assert_eq!(
        fs::read_link(env.p("dangling")).unwrap(),
        Path::new("../../../nowhere")
    );
    assert_eq!(env.meta("dangling").mtime(), 888);
    env.assert_outside_clean();
}

#[test]
fn hardlinks_share_the_inode() {
    let env = Env::new();
    env.unpack(
        Layer::new()
            .file("usr/bin/a", b"same", m(0o755, 1, 1, 1))
            .hardlink("usr/bin/b", "usr/bin/a")
            .hardlink("top", "./usr/bin/a")
            .symlink("sl", "usr", DEF)
            .hardlink("sl2", "sl"),
    )
    .unwrap();
    let a = env.meta("usr/bin/a");
    let b = env.meta("usr/bin/b");
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.ino(), env.meta("top").ino());
    assert_eq!(a.nlink(), 3);
    assert_eq!(a.mode() & 0o7777, 0o755);
    // A hard link to a symlink links the symlink itself.
    let sl2 = env.meta("sl2");
    assert!(sl2.file_type().is_symlink());
    assert_eq!(sl2.ino(), env.meta("sl").ino());
}

#[test]
fn devices_and_fifos() {
    let env = Env::new();
    env.unpack(
        Layer::new()
            .device(EntryType::Char, "dev/null", 1, 3, m(0o666, 0, 0, 9))
            .device(EntryType::Block, "dev/loop0", 7, 0, m(0o660, 0, 6, 9))
            .device(EntryType::Fifo, "run/fifo", 0, 0, m(0o4620, 11, 12, 9)),
    )
    .unwrap();
    let md = env.meta("dev/null");
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!((md.mode() & 0o7777, md.mtime()), (0o666, 9));
    let md = env.meta("dev/loop0");
    assert!(md.file_type().is_block_device());
    assert_eq!(md.rdev(), rustix::fs::makedev(7, 0));
    assert_eq!((md.gid(), md.mode() & 0o7777), (6, 0o660));
    let md = env.meta("run/fifo");
    assert!(md.file_type().is_fifo());
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (11, 12, 0o4620));
}

#[test]
fn whiteouts_become_char_devices() {
    let env = Env::new();
    let stats = env
        .unpack(
            Layer::new()
                .file(".wh.gone", b"", m(0o644, 5, 6, 1))
                .file("etc/x", b"replace me", DEF)
                .dir("etc/tree", DEF)
                .file("etc/tree/leaf", b"", DEF)
                .file("etc/.wh.x", b"", DEF)
                .file("etc/.wh.tree", b"", DEF)
                .file("etc/.wh..wh.plnk", b"", DEF)
                .file("deep/er/.wh.y", b"", DEF),
        )
        .unwrap();
    assert_eq!(stats.entries, 8);
    for w in ["gone", "etc/x", "etc/tree", "deep/er/y"] {
        let md = env.meta(w);
        assert!(md.file_type().is_char_device(), "{w}");
        assert_eq!(md.rdev(), 0, "{w}");
    }
    assert_eq!((env.meta("gone").uid(), env.meta("gone").gid()), (5, 6));
    for hidden in [
        ".wh.gone",
        "etc/.wh.x",
        "etc/.wh..wh.plnk",
        ".wh..wh.plnk",
        "etc/plnk",
    ] {
        assert!(!env.p(hidden).exists(), "{hidden} must not be written");
    }
    assert_eq!(fs::read_dir(env.p("etc")).unwrap().count(), 2);
}

#[test]
fn opaque_marker_sets_xattr() {
    let env = Env::new();
    env.unpack(
        Layer::new()
            .dir("var", m(0o700, 0, 0, 5))
            .file("var/.wh..wh..opq", b"", DEF)
            .file("var/keep", b"", DEF)
            .file("fresh/.wh..wh..opq", b"", DEF),
    )
    .unwrap();
    assert_eq!(
        xattr(&env.p("var"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        xattr(&env.p("fresh"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!env.p("var/.wh..wh..opq").exists());
    assert_eq!(fs::read_dir(env.p("var")).unwrap().count(), 1);
    let md = env.meta("fresh");
    assert_eq!((md.uid(), md.mode() & 0o7777), (0, 0o755));
    assert_eq!(
        (env.meta("var").mode() & 0o7777, env.meta("var").mtime()),
        (0o700, 5)
    );
}

#[test]
fn later_entries_replace_earlier_ones() {
    let env = Env::new();
    env.unpack(
        Layer::new()
            // file over file
            .file("f", b"old", DEF)
            .file("f", b"new", m(0o600, 1, 1, 1))
            // dir over file
            .file("x", b"file", DEF)
            .dir("x", m(0o711, 0, 0, 2))
            // file over dir tree
            .dir("y", DEF)
            .file("y/deep/c", b"", DEF)
            .file("y", b"now a file", DEF)
            // dir over dir merges, last metadata wins
            .dir("w", m(0o700, 1, 1, 3))
            .file("w/child", b"", DEF)
            .dir("w", m(0o755, 2, 2, 4))
            // symlink over dir, then file over symlink
            .dir("s", DEF)
            .symlink("s", "/etc", DEF)
            .file("s", b"plain", DEF)
            // device over file, symlink over device
            .file("n", b"", DEF)
            .device(EntryType::Char, "n", 1, 5, DEF)
            .file("k", b"", DEF)
            .symlink("k", "n", DEF),
    )
    .unwrap();
    assert_eq!(fs::read(env.p("f")).unwrap(), b"new");
    assert_eq!(env.meta("f").mode() & 0o7777, 0o600);
    assert!(env.meta("x").is_dir());
    assert_eq!(env.meta("x").mode() & 0o7777, 0o711);
    assert_eq!(fs::read(env.p("y")).unwrap(), b"now a file");
    let w = env.meta("w");
    assert!(env.p("w/child").exists(), "merged dir keeps its children");
    assert_eq!((w.uid(), w.mode() & 0o7777, w.mtime()), (2, 0o755, 4));
    assert!(env.meta("s").is_file());
    assert_eq!(fs::read(env.p("s")).unwrap(), b"plain");
    assert!(env.meta("n").file_type().is_char_device());
    assert!(env.meta("k").file_type().is_symlink());
}

#[test]
fn deep_and_long_paths() {
    let env = Env::new();
    let deep = vec!["d"; 100].join("/");
    let long = format!("{}/{}", "n".repeat(200), "m".repeat(200));
    env.unpack(
        Layer::new()
            .file(&format!("{deep}/f"), b"deep", DEF)
            .file(&format!("{deep}/g"), b"also", DEF)
            .file(&format!("{deep}/d/h"), b"deeper", DEF)
            .file(&long, b"long", DEF),
    )
    .unwrap();
    assert_eq!(fs::read(env.p(&format!("{deep}/f"))).unwrap(), b"deep");
    assert_eq!(fs::read(env.p(&format!("{deep}/g"))).unwrap(), b"also");
    assert_eq!(fs::read(env.p(&format!("{deep}/d/h"))).unwrap(), b"deeper");
    assert_eq!(fs::read(env.p(&long)).unwrap(), b"long");
}

#[test]
fn truncated_layer_fails_naming_the_entry() {
    let env = Env::new();
    let mut bytes = Layer::new().file("big", &[7u8; 4096], DEF).bytes();
    bytes.truncate(512 + 1000);
    let err = unpack_layer(&bytes[..], &env.dest).unwrap_err();
    assert!(err.to_string().starts_with("layer entry \"big\":"), "{err}");
}

// Hostile layers.

#[test]
fn refuses_parent_dir_escape() {
    let env = Env::new();
    let (entry, r, msg) = refusal(env.unpack(Layer::new().file("../escape", b"x", DEF)));
    assert_eq!((entry.as_str(), r), ("../escape", Refusal::Escapes));
    assert_eq!(
        msg,
        r#"layer entry "../escape": path escapes the layer root"#
    );
    env.assert_outside_clean();
    assert_eq!(fs::read_dir(&env.dest).unwrap().count(), 0);
}

#[test]
fn refuses_absolute_path() {
    let env = Env::new();
    let abs = format!("/podrun-unpack-test-{}", std::process::id());
    let (entry, r, _) = refusal(env.unpack(Layer::new().file(&abs, b"x", DEF)));
    assert_eq!((entry, r), (abs.clone(), Refusal::Absolute));
    assert!(!Path::new(&abs).exists());
    env.assert_outside_clean();
}

#[test]
fn refuses_dotdot_inside_path() {
    let env = Env::new();
    let (entry, r, _) =
        refusal(env.unpack(Layer::new().dir("a", DEF).file("a/../../x", b"x", DEF)));
    assert_eq!((entry.as_str(), r), ("a/../../x", Refusal::Escapes));
    env.assert_outside_clean();
}

#[test]
fn refuses_writing_through_absolute_symlink() {
    let env = Env::new();
    let outside = env.sentinel.to_str().unwrap().to_owned();
    let (entry, r, msg) = refusal(env.unpack(Layer::new().symlink("lnk", &outside, DEF).file(
        "lnk/pwned.txt",
        b"pwned",
        DEF,
    )));
    assert_eq!(entry, "lnk/pwned.txt");
    assert_eq!(r, Refusal::ParentSymlink("lnk".into()));
    assert_eq!(
        msg,
        r#"layer entry "lnk/pwned.txt": parent "lnk" is a symlink"#
    );
    env.assert_outside_clean();
}

#[test]
fn refuses_writing_through_dotdot_symlink() {
    let env = Env::new();
    let (entry, r, _) = refusal(
        env.unpack(
            Layer::new()
                .dir("a", DEF)
                .symlink("a/lnk", "../..", DEF)
                .file("a/lnk/x", b"x", DEF),
        ),
    );
    assert_eq!(
        (entry.as_str(), r),
        ("a/lnk/x", Refusal::ParentSymlink("a/lnk".into()))
    );
    env.assert_outside_clean();

    let env = Env::new();
    let (_, r, _) = refusal(
        env.unpack(
            Layer::new()
                .symlink("lnk", "..", DEF)
                .dir("lnk/sentinel/x", DEF),
        ),
    );
    assert_eq!(r, Refusal::ParentSymlink("lnk".into()));
    env.assert_outside_clean();
}

#[test]
fn refuses_symlink_that_replaced_a_cached_dir() {
    let env = Env::new();
    let outside = env.sentinel.to_str().unwrap().to_owned();
    let (entry, r, _) = refusal(
        env.unpack(
            Layer::new()
                .dir("d", DEF)
                .file("d/one", b"", DEF)
                .symlink("d", &outside, DEF)
                .file("d/two", b"", DEF),
        ),
    );
    assert_eq!(
        (entry.as_str(), r),
        ("d/two", Refusal::ParentSymlink("d".into()))
    );
    env.assert_outside_clean();
}

#[test]
fn whiteouts_and_opaque_markers_do_not_follow_symlinks() {
    for name in ["lnk/.wh.victim", "lnk/.wh..wh..opq", "lnk/sub/.wh.x"] {
        let env = Env::new();
        let outside = env.sentinel.to_str().unwrap().to_owned();
        let (entry, r, _) = refusal(
            env.unpack(
                Layer::new()
                    .symlink("lnk", &outside, DEF)
                    .file(name, b"", DEF),
            ),
        );
        assert_eq!(
            (entry.as_str(), r),
            (name, Refusal::ParentSymlink("lnk".into()))
        );
        env.assert_outside_clean();
    }
    let env = Env::new();
    let (_, r, _) = refusal(env.unpack(Layer::new().file("a/.wh...", b"", DEF)));
    assert_eq!(r, Refusal::Escapes);
}

#[test]
fn deferred_dir_metadata_never_follows_a_later_symlink() {
    let env = Env::new();
    let outside = env.sentinel.to_str().unwrap().to_owned();
    env.unpack(
        Layer::new()
            .dir("d", m(0o777, 99, 99, 1))
            .dir("d/e", m(0o777, 98, 98, 1))
            .symlink("d", &outside, DEF),
    )
    .unwrap();
    assert!(env.meta("d").file_type().is_symlink());
    env.assert_outside_clean();
}

#[test]
fn replacing_a_symlink_does_not_write_through_it() {
    let env = Env::new();
    let target = env.sentinel.join("planted");
    let target = target.to_str().unwrap();
    env.unpack(
        Layer::new()
            .symlink("f", target, DEF)
            .file("f", b"x", m(0o4777, 0, 0, 1))
            .symlink("d", target, DEF)
            .device(EntryType::Fifo, "d", 0, 0, m(0o777, 5, 5, 1))
            .symlink("h", target, DEF)
            .hardlink("h", "f")
            .symlink("dir", env.sentinel.to_str().unwrap(), DEF)
            .dir("dir", m(0o777, 9, 9, 1)),
    )
    .unwrap();
    assert!(env.meta("f").is_file());
    assert!(env.meta("d").file_type().is_fifo());
    assert_eq!(env.meta("h").ino(), env.meta("f").ino());
    assert!(env.meta("dir").is_dir());
    env.assert_outside_clean();
}

#[test]
fn refuses_hardlink_escapes() {
    let env = Env::new();
    let (entry, r, msg) = refusal(env.unpack(Layer::new().hardlink("h", "../../etc/hostname")));
    assert_eq!(entry, "h");
    assert_eq!(
        r,
        Refusal::LinkTarget {
            target: "../../etc/hostname".into(),
            refusal: Box::new(Refusal::Escapes)
        }
    );
    assert_eq!(
        msg,
        r#"layer entry "h": hard link target "../../etc/hostname": path escapes the layer root"#
    );
    env.assert_outside_clean();

    let env = Env::new();
    let secret = env.secrets.join("secret");
    let (_, r, _) = refusal(env.unpack(Layer::new().hardlink("h", secret.to_str().unwrap())));
    assert!(
        matches!(&r, Refusal::LinkTarget { refusal, .. } if **refusal == Refusal::Absolute),
        "{r:?}"
    );
    assert!(!env.p("h").exists());
    env.assert_outside_clean();
}

#[test]
fn refuses_hardlink_through_symlink() {
    let env = Env::new();
    let secrets = env.secrets.to_str().unwrap().to_owned();
    let (entry, r, msg) = refusal(
        env.unpack(
            Layer::new()
                .symlink("lnk", &secrets, DEF)
                .hardlink("stolen", "lnk/secret"),
        ),
    );
    assert_eq!(entry, "stolen");
    assert_eq!(
        r,
        Refusal::LinkTarget {
            target: "lnk/secret".into(),
            refusal: Box::new(Refusal::ParentSymlink("lnk".into()))
        }
    );
    assert_eq!(
        msg,
        r#"layer entry "stolen": hard link target "lnk/secret": parent "lnk" is a symlink"#
    );
    assert!(!env.p("stolen").exists());
    env.assert_outside_clean();
}

#[test]
fn refuses_missing_hardlink_target_and_non_dir_root() {
    let env = Env::new();
    let (_, r, _) = refusal(env.unpack(Layer::new().hardlink("h", "nope")));
    assert_eq!(r, Refusal::LinkTargetMissing("nope".into()));

    let env = Env::new();
    let outside = env.sentinel.to_str().unwrap().to_owned();
    let (entry, r, _) = refusal(env.unpack(Layer::new().symlink("./", &outside, DEF)));
    assert_eq!((entry.as_str(), r), ("./", Refusal::RootNotDir));
    env.assert_outside_clean();

    let env = Env::new();
    let (_, r, _) = refusal(env.unpack(Layer::new().file("f", b"", DEF).file("f/g", b"", DEF)));
    assert_eq!(r, Refusal::ParentNotDir("f".into()));
}

/// `cargo test --release -p podrun-image --test unpack -- --ignored --nocapture throughput`;
/// `PODRUN_BENCH_DIR` picks the filesystem to unpack into (default: the temp
/// dir), `PODRUN_BENCH_TAR` a tar file to unpack instead of the synthetic one.
#[test]
#[ignore = "benchmark; run in release mode"]
fn throughput() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = |len: usize| {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            v.extend_from_slice(&rng.to_le_bytes());
        }
        v.truncate(len);
        v
    };
    let mut layer = Layer::new();
    for d in (0..400).filter(|_| std::env::var_os("PODRUN_BENCH_TAR").is_none()) {
        layer.dir(&format!("usr/share/pkg{d}"), m(0o755, 0, 0, 1));
        for f in 0..50 {
            let data = random(512 + (d * 50 + f) % 7680);
            layer.file(&format!("usr/share/pkg{d}/file{f}.txt"), &data, DEF);
        }
    }
    for b in (0..12).filter(|_| std::env::var_os("PODRUN_BENCH_TAR").is_none()) {
        layer.file(&format!("opt/big{b}.bin"), &random(10 << 20), DEF);
    }
    let bytes = match std::env::var_os("PODRUN_BENCH_TAR") {
        Some(path) => fs::read(path).unwrap(),
        None => layer.bytes(),
    };
    let base = match std::env::var_os("PODRUN_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let start = std::time::Instant::now();
    let stats = unpack_layer(&bytes[..], base.path()).unwrap();
    let took = start.elapsed();
    eprintln!(
        "unpacked {} entries, {:.1} MB in {:.3} s ({:.0} MB/s, {:.0} entries/s)",
        stats.entries,
        stats.bytes as f64 / 1e6,
        took.as_secs_f64(),
        stats.bytes as f64 / 1e6 / took.as_secs_f64(),
        stats.entries as f64 / took.as_secs_f64(),
    );
    if std::env::var_os("PODRUN_BENCH_TAR").is_none() {
        assert_eq!(stats.entries, 400 + 20_000 + 12);
    }
}
