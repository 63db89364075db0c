//! Who the container runs as: the config's user and group, else the image's `User`,
//! resolved in the image's /etc/passwd and /etc/group; supplementary groups from
//! /etc/group and the config's (the pod's supplementalGroups and fsGroup).

use std::io::Read;
use std::path::Path;

use crate::cri::{LinuxContainerSecurityContext, SupplementalGroupsPolicy};
use crate::error::{ErrorKind, ReadError};
use crate::input::ImageConfig;

/// The most a user database file may hold before it is refused (a defence against an
/// image whose /etc/passwd is a device or a huge file).
pub const MAX_USER_FILE: u64 = 4 << 20;

/// The image's /etc/passwd and /etc/group, as text; `None` when the file is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFiles {
    /// /etc/passwd.
    pub passwd: Option<String>,
    /// /etc/group.
    pub group: Option<String>,
}

impl UserFiles {
    /// Reads etc/passwd and etc/group of a root filesystem. Symlinks resolve inside the
    /// root (openat2 RESOLVE_IN_ROOT), so an image cannot point them at host files.
    pub fn read(rootfs: &Path) -> Result<Self, ReadError> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let root = rustix::fs::open(
            rootfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ReadError::OpenRoot {
            path: rootfs.to_path_buf(),
            source: e.into(),
        })?;
        let read = |file: &'static str| -> Result<Option<String>, ReadError> {
            let err = |source: std::io::Error| ReadError::Read {
                file,
                root: rootfs.to_path_buf(),
                source,
            };
            let fd = match rustix::fs::openat2(
                &root,
                file,
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(None),
                Err(e) => return Err(err(e.into())),
            };
            let stat = rustix::fs::fstat(&fd).map_err(|e| err(e.into()))?;
            if rustix::fs::FileType::from_raw_mode(stat.st_mode)
                != rustix::fs::FileType::RegularFile
            {
                return Ok(None);
            }
            let mut text = Vec::new();
            std::fs::File::from(fd)
                .take(MAX_USER_FILE + 1)
                .read_to_end(&mut text)
                .map_err(err)?;
            if text.len() as u64 > MAX_USER_FILE {
                return Err(ReadError::TooLarge {
                    file,
                    root: rootfs.to_path_buf(),
                    limit: MAX_USER_FILE,
                });
            }
            Ok(Some(String::from_utf8_lossy(&text).into_owned()))
        };
        Ok(Self {
            passwd: read("etc/passwd")?,
            group: read("etc/group")?,
        })
    }
}

/// One /etc/passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// The user name.
    pub name: String,
    /// The uid.
    pub uid: i64,
    /// The primary gid.
    pub gid: i64,
}

/// One /etc/group entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// The group name.
    pub name: String,
    /// The gid.
    pub gid: i64,
    /// Member user names.
    pub members: Vec<String>,
}

// Parsed like runc's libcontainer/user (which containerd uses): blank lines skipped,
// fields split on ':', a number that does not parse reads as 0.
fn fields(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(':').collect())
}

fn num(field: Option<&&str>) -> i64 {
    field.and_then(|f| f.parse().ok()).unwrap_or(0)
}

/// Parses /etc/passwd.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    fields(text)
        .map(|f| PasswdEntry {
            name: f[0].to_string(),
            uid: num(f.get(2)),
            gid: num(f.get(3)),
        })
        .collect()
}

/// Parses /etc/group.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    fields(text)
        .map(|f| GroupEntry {
            name: f[0].to_string(),
            gid: num(f.get(2)),
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// The process identity: `process.user` of the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Supplementary gids, sorted, without duplicates, the primary gid included
    /// (containerd's ensureAdditionalGids).
    pub additional_gids: Vec<u32>,
}

/// A user or group given by number or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Id {
    Num(i64),
    Name(String),
}

fn parse_id(s: &str) -> Id {
    // Go's strconv.Atoi: an optional sign, then digits.
    match s.parse::<i64>() {
        Ok(n) => Id::Num(n),
        Err(_) => Id::Name(s.to_string()),
    }
}

const MAX_ID: i64 = i32::MAX as i64;

fn check_range(user: &str, id: i64, what: &str) -> Result<u32, ErrorKind> {
    if (0..=MAX_ID).contains(&id) {
        Ok(id as u32)
    } else {
        Err(ErrorKind::InvalidUser {
            user: user.to_string(),
            reason: format!("{what} out of range"),
        })
    }
}

/// Resolves the container's user as containerd does (pkg/oci/spec_opts.go WithUser,
/// WithUserID, WithUsername, WithAdditionalGIDs; internal/cri/opts/spec_opts.go
/// WithSupplementalGroups): the config's `run_as_user` (else `run_as_username`, else
/// the image's user: what kubelet sends when the pod names none), names resolved in the
/// image's passwd file, the primary gid from the passwd entry (0 when the uid has
/// none) unless `run_as_group` says, then the groups that list the user (unless the
/// policy is Strict) and the config's supplemental groups (kubelet put the pod's
/// fsGroup and supplementalGroups there). runAsNonRoot is kubelet's to check, before.
pub fn resolve_user(
    sec: &LinuxContainerSecurityContext,
    image: &ImageConfig,
    image_ref: &str,
    files: &UserFiles,
    honor_image_group: bool,
) -> Result<ResolvedUser, ErrorKind> {
    let (image_user, image_group) = match image.user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image.user.as_str(), None),
    };
    let image_id = if image_user.is_empty() {
        Id::Num(0)
    } else {
        parse_id(image_user)
    };

    let user = match (sec.run_as_user, sec.run_as_username.as_str()) {
        (Some(uid), _) => Id::Num(uid),
        (None, "") => image_id,
        (None, name) => Id::Name(name.to_string()),
    };
    let group = match (sec.run_as_group, sec.run_as_user, image_group) {
        (Some(gid), _, _) => Some(Id::Num(gid)),
        (None, None, Some(g)) if honor_image_group && !image_user.is_empty() => Some(parse_id(g)),
        _ => None,
    };
    let user_str = match (&user, &group) {
        (Id::Num(n), None) => n.to_string(),
        (Id::Name(n), None) => n.clone(),
        (u, Some(g)) => format!("{}:{}", id_str(u), id_str(g)),
    };

    let passwd = files.passwd.as_deref().map(parse_passwd);
    let groups = files.group.as_deref().map(parse_group);
    let user_missing = |name: &str, reason: &str| ErrorKind::UserNotFound {
        user: name.to_string(),
        image: image_ref.to_string(),
        reason: reason.to_string(),
    };

    // The uid and the gid the passwd entry gives (WithUserID, WithUsername).
    let (uid, passwd_gid, name) = match &user {
        Id::Num(n) => {
            let uid = check_range(&user_str, *n, "uid")?;
            match passwd.iter().flatten().find(|e| e.uid == *n) {
                Some(e) => (uid, e.gid, Some(e.name.clone())),
                None => (uid, 0, None),
            }
        }
        Id::Name(n) => {
            let Some(entries) = &passwd else {
                return Err(user_missing(n, "the image has no /etc/passwd"));
            };
            let Some(e) = entries.iter().find(|e| &e.name == n) else {
                return Err(user_missing(n, "no matching entries in passwd file"));
            };
            (
                check_range(&user_str, e.uid, "uid")?,
                e.gid,
                Some(n.clone()),
            )
        }
    };
    let gid = match &group {
        None => check_range(&user_str, passwd_gid, "gid")?,
        Some(Id::Num(g)) => check_range(&user_str, *g, "gid")?,
        Some(Id::Name(g)) => {
            let missing = |reason: &str| ErrorKind::GroupNotFound {
                group: g.clone(),
                image: image_ref.to_string(),
                reason: reason.to_string(),
            };
            let entries = groups
                .as_ref()
                .ok_or_else(|| missing("the image has no /etc/group"))?;
            let e = entries
                .iter()
                .find(|e| &e.name == g)
                .ok_or_else(|| missing("no matching entries in group file"))?;
            check_range(&user_str, e.gid, "gid")?
        }
    };

    let mut gids = vec![gid];
    if sec.supplemental_groups_policy != SupplementalGroupsPolicy::Strict {
        if let Some(name) = &name {
            for g in groups.iter().flatten() {
                if &g.name != name
                    && g.members.iter().any(|m| m == name)
                    && (0..=MAX_ID).contains(&g.gid)
                {
                    gids.push(g.gid as u32);
                }
            }
        }
    }
    gids.extend(sec.supplemental_groups.iter().map(|&g| g as u32));
    gids.sort_unstable();
    gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: gids,
    })
}

fn id_str(id: &Id) -> String {
    match id {
        Id::Num(n) => n.to_string(),
        Id::Name(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests;
