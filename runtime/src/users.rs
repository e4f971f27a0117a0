//! Resolves a Dockerfile `USER` value against the rootfs's `/etc/passwd`
//! and `/etc/group`, the way BuildKit does: a name or numeric uid, an
//! optional `:group`, the primary gid from passwd, and supplementary groups
//! from every group that lists the user.

use crate::{Error, Result};
use kiln_snapshotter::fsx::read_in_root;
use std::path::Path;

/// A resolved process identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (always includes `gid`).
    pub additional_gids: Vec<u32>,
    /// Home directory (from passwd, `/` when unknown).
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 6 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

fn parse_groups(text: &str) -> Vec<(String, u32, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            let members = f[3].split(',').filter(|m| !m.is_empty()).map(str::to_string).collect();
            Some((f[0].to_string(), f[2].parse().ok()?, members))
        })
        .collect()
}

/// Largest `/etc/passwd` or `/etc/group` read from an image (the image's
/// own steps write them, so they are the tenant's).
const MAX_ACCOUNT_FILE: u64 = 16 << 20;

fn read_text(rootfs: &Path, path: &str) -> String {
    read_in_root(rootfs, Path::new(path), MAX_ACCOUNT_FILE)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, …).
pub fn resolve(rootfs: &Path, spec: &str) -> Result<Identity> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let passwd = parse_passwd(&read_text(rootfs, "/etc/passwd"));
    let groups = parse_groups(&read_text(rootfs, "/etc/group"));
    let entry =
        match user.parse::<u32>() {
            Ok(uid) => passwd.iter().find(|e| e.uid == uid),
            Err(_) => Some(passwd.iter().find(|e| e.name == user).ok_or_else(|| {
                Error::User(format!("unable to find user {user}: no matching entries in passwd file"))
            })?),
        };
    let uid = entry.map_or_else(|| user.parse().unwrap_or(0), |e| e.uid);
    let mut gid = entry.map_or(0, |e| e.gid);
    if group == Some("") {
        return Err(Error::User(format!("{spec:?} names no group after the ':' (write {user} or {user}:<group>)")));
    }
    if let Some(g) = group {
        gid =
            match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => groups.iter().find(|(name, _, _)| name == g).map(|(_, id, _)| *id).ok_or_else(|| {
                    Error::User(format!("unable to find group {g}: no matching entries in group file"))
                })?,
            };
    }
    let mut additional_gids = vec![gid];
    if group.is_none() {
        if let Some(e) = entry {
            for (_, id, members) in &groups {
                if members.contains(&e.name) && !additional_gids.contains(id) {
                    additional_gids.push(*id);
                }
            }
        }
    }
    let home = entry.map_or_else(|| "/".to_string(), |e| e.home.clone());
    Ok(Identity { uid, gid, additional_gids, home })
}

/// The owner BuildKit's file operations give `spec` (`user[:group]`, as
/// `WORKDIR` under `USER` and `COPY --chown` pass it): a number (or
/// `root`) as given, the group defaulting to the user's number; a user
/// name's uid and gid from passwd, a group name's gid from group. A name
/// the image does not have is not an error here — the user is 0, the group
/// keeps the user's gid — as in BuildKit, where only a RUN as that user
/// fails.
pub fn file_owner(rootfs: &Path, spec: &str) -> (u32, u32) {
    let number = |s: &str| if s == "root" { Some(0) } else { s.parse::<u32>().ok() };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, mut gid) = match (user, number(user)) {
        ("", _) => (0, 0),
        (_, Some(n)) => (n, n),
        (name, None) => {
            let passwd = parse_passwd(&read_text(rootfs, "/etc/passwd"));
            passwd.iter().find(|e| e.name == name).map_or((0, 0), |e| (e.uid, e.gid))
        }
    };
    if let Some(g) = group {
        gid = match number(g) {
            Some(n) => n,
            None => {
                let groups = parse_groups(&read_text(rootfs, "/etc/group"));
                groups.iter().find(|(name, _, _)| name == g).map_or(gid, |(_, id, _)| *id)
            }
        };
    }
    (uid, gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_owners_follow_buildkit_s_file_ops() {
        let r = rootfs();
        assert_eq!(file_owner(r.path(), ""), (0, 0));
        assert_eq!(file_owner(r.path(), "5000"), (5000, 5000), "a number without a passwd entry");
        assert_eq!(file_owner(r.path(), "app"), (1000, 1001));
        assert_eq!(file_owner(r.path(), "ghost"), (0, 0), "an unknown name is not an error");
        assert_eq!(file_owner(r.path(), "app:wheel"), (1000, 10));
        assert_eq!(file_owner(r.path(), "app:nogroup"), (1000, 1001), "an unknown group keeps the user's");
        assert_eq!(file_owner(r.path(), "5000:6000"), (5000, 6000));
        assert_eq!(file_owner(r.path(), "root:app"), (0, 1001));
    }

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\napp:x:1001:\nwheel:x:10:app,bob\n").unwrap();
        d
    }

    #[test]
    fn resolves_names_ids_and_groups() {
        let r = rootfs();
        let app = resolve(r.path(), "app").unwrap();
        assert_eq!((app.uid, app.gid, app.additional_gids.clone()), (1000, 1001, vec![1001, 10]));
        assert_eq!(app.home, "/home/app");
        assert_eq!(resolve(r.path(), "").unwrap().uid, 0);
        let empty_group = resolve(r.path(), "app:").unwrap_err().to_string();
        assert!(empty_group.contains("names no group after the ':'"), "{empty_group}");
        let num = resolve(r.path(), "4242:4343").unwrap();
        assert_eq!((num.uid, num.gid, num.additional_gids), (4242, 4343, vec![4343]));
        assert_eq!(resolve(r.path(), "app:wheel").unwrap().gid, 10);
        let err = resolve(r.path(), "nobody").unwrap_err().to_string();
        assert!(err.contains("unable to find user nobody"), "{err}");
        assert!(resolve(r.path(), "app:nogroup").is_err());
    }
}
