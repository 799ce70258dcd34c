//! Resolution of a `USER` spec against the image's `/etc/passwd` and
//! `/etc/group`, with BuildKit's rules:
//!
//! - "" is root, and stays root even when the files are missing or broken;
//! - "uid:gid" with both parts numeric (or "root") is taken as it is, without
//!   looking at the files and without supplementary groups;
//! - otherwise the user part is a name or a uid (a uid need not exist in
//!   `/etc/passwd`); without a group part the primary group comes from
//!   `/etc/passwd` and the supplementary groups from the `/etc/group` entries
//!   that list the user name; with one, the group is a name or a gid;
//! - the primary gid is always also in the supplementary list;
//! - `HOME` is the home of the first `/etc/passwd` entry with the final uid,
//!   or `/`.

/// The largest id accepted, as in BuildKit (ids are signed 32-bit there).
const MAX_ID: u64 = i32::MAX as u64;

/// Who a RUN command runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, the primary gid first.
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: Option<u32>,
    gid: Option<u32>,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: Option<u32>,
    members: Vec<&'a str>,
}

/// Resolves `spec`; `passwd` and `group` are the files' contents, `None` when
/// the image has no such file.
pub(crate) fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ExecUser, String> {
    let users: Vec<PasswdEntry> = passwd.map(parse_passwd).unwrap_or_default();
    let groups: Vec<GroupEntry> = group.map(parse_group).unwrap_or_default();

    let (uid, gid, sgids) = if spec.is_empty() {
        // The default user is root whatever the files say, but root's own
        // entry still supplies its groups.
        resolve_spec("0", &users, &groups, passwd.is_some()).unwrap_or((0, 0, Vec::new()))
    } else if let Some((uid, gid)) = numeric_pair(spec)? {
        (uid, gid, Vec::new())
    } else {
        resolve_spec(spec, &users, &groups, passwd.is_some())?
    };

    let mut additional_gids = vec![gid];
    additional_gids.extend(sgids.into_iter().filter(|&g| g != gid));
    let home = users
        .iter()
        .find(|u| u.uid == Some(uid))
        .map(|u| u.home.to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// "uid:gid" where both parts are numbers or "root".
fn numeric_pair(spec: &str) -> Result<Option<(u32, u32)>, String> {
    let Some((user, group)) = spec.split_once(':') else {
        return Ok(None);
    };
    let part = |s: &str| -> Result<Option<u32>, String> {
        if s == "root" {
            return Ok(Some(0));
        }
        numeric(s)
    };
    match (part(user)?, part(group)?) {
        (Some(u), Some(g)) => Ok(Some((u, g))),
        _ => Ok(None),
    }
}

/// A decimal id, `None` when `s` is a name, an error when out of range.
fn numeric(s: &str) -> Result<Option<u32>, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match s.parse::<u64>() {
        Ok(n) if n <= MAX_ID => Ok(Some(n as u32)),
        _ => Err(format!("id {s} is out of range (0 to {MAX_ID})")),
    }
}

fn resolve_spec(
    spec: &str,
    users: &[PasswdEntry],
    groups: &[GroupEntry],
    have_passwd: bool,
) -> Result<(u32, u32, Vec<u32>), String> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g).filter(|g| !g.is_empty())),
        None => (spec, None),
    };
    let user_id = numeric(user_part)?;
    let matched = users.iter().find(|u| match user_id {
        Some(id) => u.uid == Some(id),
        None => u.name == user_part,
    });

    let (uid, mut gid, matched_name) = match (matched, user_id) {
        (Some(u), _) => (u.uid.unwrap_or(0), u.gid.unwrap_or(0), Some(u.name)),
        (None, Some(id)) => (id, 0, None),
        (None, None) => {
            let why = if have_passwd {
                "no matching entries in /etc/passwd"
            } else {
                "the image has no /etc/passwd"
            };
            return Err(format!("unable to find user {user_part}: {why}"));
        }
    };

    let mut sgids = Vec::new();
    match group_part {
        Some(group_part) => {
            let group_id = numeric(group_part)?;
            let found = groups.iter().find(|g| match group_id {
                Some(id) => g.gid == Some(id),
                None => g.name == group_part,
            });
            gid = match (found, group_id) {
                (Some(g), _) => g.gid.unwrap_or(0),
                (None, Some(id)) => id,
                (None, None) => {
                    return Err(format!(
                        "unable to find group {group_part}: no matching entries in /etc/group"
                    ))
                }
            };
        }
        None => {
            if let Some(name) = matched_name {
                sgids = groups
                    .iter()
                    .filter(|g| g.members.contains(&name))
                    .map(|g| g.gid.unwrap_or(0))
                    .collect();
            }
        }
    }
    Ok((uid, gid, sgids))
}

fn entries(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry<'_>> {
    entries(text)
        .map(|f| PasswdEntry {
            name: f[0],
            uid: f.get(2).and_then(|s| s.parse().ok()),
            gid: f.get(3).and_then(|s| s.parse().ok()),
            home: f.get(5).copied().unwrap_or(""),
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry<'_>> {
    entries(text)
        .map(|f| GroupEntry {
            name: f[0],
            gid: f.get(2).and_then(|s| s.parse().ok()),
            members: f
                .get(3)
                .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
        })
        .collect()
}
