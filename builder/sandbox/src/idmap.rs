//! The id mappings of rbuild's user namespace, computed from `/etc/subuid`
//! and `/etc/subgid` without touching the system, so they can be tested.
//!
//! Root inside maps to the calling user; ids from 1 up map to the user's
//! subordinate ranges, in file order, when there are any and the setuid
//! helpers newuidmap/newgidmap exist to install them. Otherwise only root
//! exists inside, and the user is told how to get more.

/// One line of `/etc/subuid` or `/etc/subgid` that belongs to the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SubIdRange {
    pub start: u32,
    pub count: u32,
}

/// One line of `/proc/<pid>/uid_map`: `count` ids from `inside` map to ids
/// from `outside` in the parent namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdMapLine {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// How rbuild's user namespace gets its ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum IdMapPlan {
    /// Install both maps with newuidmap and newgidmap.
    Ranges {
        uid_map: Vec<IdMapLine>,
        gid_map: Vec<IdMapLine>,
    },
    /// Map only root, which an unprivileged process may do itself (after
    /// denying `setgroups`); `warning` tells the user what is missing.
    Single {
        uid_map: IdMapLine,
        gid_map: IdMapLine,
        warning: String,
    },
}

/// The ranges `/etc/subuid`-format `text` gives the user called `name`
/// (when known) with id `id`. Lines may name the user or give the id;
/// malformed lines and empty ranges are not the user's and are passed over.
pub(crate) fn parse_subid_ranges(text: &str, name: Option<&str>, id: u32) -> Vec<SubIdRange> {
    let id_text = id.to_string();
    let mut ranges = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(owner), Some(start), Some(count), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if owner != id_text && Some(owner) != name {
            continue;
        }
        let (Ok(start), Ok(count)) = (start.parse::<u32>(), count.parse::<u32>()) else {
            continue;
        };
        if count == 0 || start.checked_add(count - 1).is_none() {
            continue;
        }
        ranges.push(SubIdRange { start, count });
    }
    ranges
}

/// The maps for a user with `uid`/`gid` (`name` when `/etc/passwd` knows
/// it), given the contents of `/etc/subuid` and `/etc/subgid` (`None` when
/// missing) and whether newuidmap/newgidmap were found.
pub(crate) fn plan_id_maps(
    uid: u32,
    gid: u32,
    name: Option<&str>,
    subuid: Option<&str>,
    subgid: Option<&str>,
    have_newuidmap: bool,
    have_newgidmap: bool,
) -> IdMapPlan {
    let uid_ranges = subuid
        .map(|t| parse_subid_ranges(t, name, uid))
        .unwrap_or_default();
    // /etc/subgid lines are keyed by the user (name or uid), not by a group.
    let gid_ranges = subgid
        .map(|t| parse_subid_ranges(t, name, uid))
        .unwrap_or_default();
    if !uid_ranges.is_empty() && !gid_ranges.is_empty() && have_newuidmap && have_newgidmap {
        return IdMapPlan::Ranges {
            uid_map: with_ranges(uid, &uid_ranges),
            gid_map: with_ranges(gid, &gid_ranges),
        };
    }

    let who = name.map(str::to_string).unwrap_or_else(|| uid.to_string());
    let free = free_subid_range(&[subuid, subgid], SUGGESTED_COUNT);
    let (first, last, count) = (free.start, free.start + (free.count - 1), free.count);
    let mut missing = Vec::new();
    if uid_ranges.is_empty() {
        missing.push("/etc/subuid");
    }
    if gid_ranges.is_empty() {
        missing.push("/etc/subgid");
    }
    let warning = if missing.is_empty() {
        "newuidmap/newgidmap were not found, so the build sees only uid 0 and gid 0 \
         (`chown`, `USER 1000` and base layers owned by other ids fail). \
         To fix: install them (`apt-get install uidmap`, `dnf install shadow-utils`)."
            .to_string()
    } else {
        format!(
            "user {who} has no subordinate id range in {}, so the build sees only uid 0 and gid 0 \
             (`chown`, `USER 1000` and base layers owned by other ids fail). \
             To fix: add the line `{who}:{first}:{count}` to /etc/subuid and /etc/subgid \
             (or run `usermod --add-subuids {first}-{last} --add-subgids {first}-{last} {who}`){}.",
            missing.join(" and "),
            if have_newuidmap && have_newgidmap {
                ""
            } else {
                ", and install newuidmap/newgidmap (`apt-get install uidmap`)"
            }
        )
    };
    IdMapPlan::Single {
        uid_map: IdMapLine {
            inside: 0,
            outside: uid,
            count: 1,
        },
        gid_map: IdMapLine {
            inside: 0,
            outside: gid,
            count: 1,
        },
        warning,
    }
}

/// How many subordinate ids a suggested range holds (what `useradd` gives).
const SUGGESTED_COUNT: u32 = 65536;

/// Where `useradd` starts allocating subordinate ids (`SUB_UID_MIN`).
const SUGGESTED_MIN: u32 = 100_000;

/// The lowest range of `count` ids from [`SUGGESTED_MIN`] up that overlaps no
/// line, of any user, of the `/etc/subuid`/`/etc/subgid` texts given: a range
/// the user can add without sharing ids with another user's containers.
pub(crate) fn free_subid_range(files: &[Option<&str>], count: u32) -> SubIdRange {
    let mut taken: Vec<SubIdRange> = files
        .iter()
        .flatten()
        .flat_map(|text| text.lines())
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let (_, start, n) = (fields.next()?, fields.next()?, fields.next()?);
            let (start, n) = (start.parse::<u32>().ok()?, n.parse::<u32>().ok()?);
            (n > 0).then_some(SubIdRange { start, count: n })
        })
        .collect();
    taken.sort_by_key(|r| r.start);
    let mut start = SUGGESTED_MIN;
    for r in &taken {
        let end = u64::from(r.start) + u64::from(r.count);
        if u64::from(r.start) < u64::from(start) + u64::from(count) && u64::from(start) < end {
            // Past this one; a later line may overlap the new place too, and
            // lines are sorted by start, so one pass finds the gap.
            start = u32::try_from(end).unwrap_or(u32::MAX - count);
        }
    }
    SubIdRange { start: start.min(u32::MAX - count), count }
}

/// Root → `id`, then the ranges one after the other from inside id 1.
fn with_ranges(id: u32, ranges: &[SubIdRange]) -> Vec<IdMapLine> {
    let mut lines = vec![IdMapLine {
        inside: 0,
        outside: id,
        count: 1,
    }];
    let mut next = 1u32;
    let mut used: Vec<SubIdRange> = vec![SubIdRange {
        start: id,
        count: 1,
    }];
    for r in ranges {
        // The kernel refuses a map whose outside ranges overlap: skip a range
        // that repeats an earlier line (a common result of `useradd` plus a
        // hand-added line) or holds the user's own id.
        let overlaps = used.iter().any(|u| {
            r.start < u.start.saturating_add(u.count) && u.start < r.start.saturating_add(r.count)
        });
        if overlaps {
            continue;
        }
        used.push(*r);
        let Some(end) = next.checked_add(r.count) else {
            break;
        };
        lines.push(IdMapLine {
            inside: next,
            outside: r.start,
            count: r.count,
        });
        next = end;
    }
    lines
}

/// The arguments newuidmap/newgidmap take after the pid.
pub(crate) fn map_args(lines: &[IdMapLine]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|l| {
            [
                l.inside.to_string(),
                l.outside.to_string(),
                l.count.to_string(),
            ]
        })
        .collect()
}
