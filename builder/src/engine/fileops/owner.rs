//! Owner specs (`--chown`, USER for WORKDIR): `user`, `user:group`, numbers or
//! names, names looked up in the *target* image's `/etc/passwd` and `/etc/group`.

use super::error::{FileOpError, Result};
use super::rootfs::Rootfs;

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

/// Resolves `user[:group]` to `(uid, gid)`. A number passes through (a lone uid
/// also serves as the gid); a user name alone takes the user's primary group; an
/// unknown name is an error naming the name and the file searched.
pub fn resolve_owner(spec: &str, target: &Rootfs) -> Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let invalid = |reason| FileOpError::InvalidOwner {
        spec: spec.to_owned(),
        reason,
    };
    if user.is_empty() {
        return Err(invalid("the user part is empty"));
    }
    if group == Some("") {
        return Err(invalid("the group part is empty"));
    }
    let (uid, primary_gid) = match numeric_id(user) {
        Some(id) => (id, id),
        None => lookup_user(target, user)?.ok_or_else(|| FileOpError::UnknownUser {
            name: user.to_owned(),
            file: PASSWD,
        })?,
    };
    let gid = match group {
        None => primary_gid,
        Some(g) => match numeric_id(g) {
            Some(id) => id,
            None => lookup_group(target, g)?.ok_or_else(|| FileOpError::UnknownGroup {
                name: g.to_owned(),
                file: GROUP,
            })?,
        },
    };
    Ok((uid, gid))
}

/// `root` and decimal ids are taken as numbers without any lookup.
fn numeric_id(s: &str) -> Option<u32> {
    if s == "root" {
        return Some(0);
    }
    s.parse::<u32>().ok().filter(|&id| id != u32::MAX)
}

/// A user's uid and primary gid from the image's passwd file.
fn lookup_user(target: &Rootfs, name: &str) -> Result<Option<(u32, u32)>> {
    Ok(find_entry(target, PASSWD, name)?.and_then(|fields| {
        let uid = fields.get(2)?.parse().ok()?;
        let gid = fields.get(3)?.parse().ok()?;
        Some((uid, gid))
    }))
}

/// A group's gid from the image's group file.
fn lookup_group(target: &Rootfs, name: &str) -> Result<Option<u32>> {
    Ok(find_entry(target, GROUP, name)?.and_then(|fields| fields.get(2)?.parse().ok()))
}

/// The ':'-separated fields of the first line of `file` whose first field is
/// `name`. A missing file means the name is unknown.
fn find_entry(target: &Rootfs, file: &str, name: &str) -> Result<Option<Vec<String>>> {
    let content = match target.read_file(file) {
        Ok(Some(c)) => c,
        Ok(None) | Err(FileOpError::NotAFile { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(String::from_utf8_lossy(&content)
        .lines()
        .map(|line| line.split(':').map(str::to_owned).collect::<Vec<_>>())
        .find(|fields| fields.len() >= 3 && fields[0] == name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fileops::testutil::Layers;

    fn image() -> Layers {
        let l = Layers::new(2);
        l.file(
            0,
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001::/home/app:/bin/sh\n",
        );
        l.file(0, "etc/group", "root:x:0:\nstaff:x:50:app\n");
        // A later layer replaces the group file: the merged view is what counts.
        l.file(1, "etc/group", "root:x:0:\nstaff:x:51:app\n");
        l
    }

    #[test]
    fn numbers_pass_through() {
        let l = image();
        assert_eq!(resolve_owner("42", &l.rootfs()).unwrap(), (42, 42));
        assert_eq!(resolve_owner("42:7", &l.rootfs()).unwrap(), (42, 7));
        assert_eq!(resolve_owner("root", &Rootfs::empty()).unwrap(), (0, 0));
    }

    #[test]
    fn names_resolve_in_the_target_image() {
        let l = image();
        let fs = l.rootfs();
        assert_eq!(resolve_owner("app", &fs).unwrap(), (1000, 1001));
        assert_eq!(resolve_owner("app:staff", &fs).unwrap(), (1000, 51));
        assert_eq!(resolve_owner("app:0", &fs).unwrap(), (1000, 0));
        assert_eq!(resolve_owner("5:staff", &fs).unwrap(), (5, 51));
    }

    #[test]
    fn unknown_names_name_the_file() {
        let l = image();
        let err = resolve_owner("nobody", &l.rootfs()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown user \"nobody\": not found in /etc/passwd"
        );
        let err = resolve_owner("app:wheel", &l.rootfs()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown group \"wheel\": not found in /etc/group"
        );
        let err = resolve_owner("app", &Rootfs::empty()).unwrap_err();
        assert!(matches!(err, FileOpError::UnknownUser { .. }));
    }

    #[test]
    fn malformed_specs_are_rejected() {
        assert!(matches!(
            resolve_owner(":1", &Rootfs::empty()),
            Err(FileOpError::InvalidOwner { .. })
        ));
        assert!(matches!(
            resolve_owner("1:", &Rootfs::empty()),
            Err(FileOpError::InvalidOwner { .. })
        ));
    }
}
