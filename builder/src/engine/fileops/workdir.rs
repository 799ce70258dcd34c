//! WORKDIR: the directory is created (with its missing parents) when the target
//! image lacks it, owned by the stage's USER.

use std::path::Path;

use super::error::{FileOpError, Result};
use super::fsio;
use super::output::{NewDir, OutputLayer};
use super::owner::resolve_owner;
use super::rootfs::Rootfs;

/// Creates `path` (and its parents) if it does not exist in `target`, writing
/// the diff into `out_dir`; new directories are 0755 and owned by `user`
/// (resolved like `--chown`; root when `None`). Returns whether anything was
/// created. An existing directory is left alone; anything else there is an error.
pub fn make_workdir(
    path: &str,
    user: Option<&str>,
    target: &Rootfs,
    out_dir: &Path,
) -> Result<bool> {
    let mut out = OutputLayer::new(target, out_dir)?;
    let resolved = out.resolve(path.as_bytes(), true)?;
    match out.lookup(&resolved)? {
        Some(node) if node.is_dir() => return Ok(false),
        Some(_) => {
            return Err(FileOpError::NotADirectory {
                path: resolved.display(),
            })
        }
        None => {}
    }
    // The user is looked up only when a directory is really made for it.
    let (uid, gid) = match user.filter(|u| !u.is_empty()) {
        Some(user) => resolve_owner(user, target)?,
        None => (0, 0),
    };
    let new_dir = NewDir {
        mode: 0o755,
        uid,
        gid,
        mtime: fsio::now(),
    };
    let created = out.mkdir_all(&resolved, &new_dir)?;
    out.finish()?;
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fileops::testutil::{listing, owner, Layers};
    use tempfile::TempDir;

    #[test]
    fn creates_missing_directories_owned_by_the_user() {
        let l = Layers::new(1);
        l.file(0, "etc/passwd", "app:x:1000:1000::/home/app:/bin/sh\n");
        l.dir(0, "srv");
        let out = TempDir::new().unwrap();
        assert!(make_workdir("/srv/app/data", Some("app"), &l.rootfs(), out.path()).unwrap());
        assert_eq!(
            listing(out.path()),
            vec!["srv/", "srv/app/", "srv/app/data/"]
        );
        assert_eq!(owner(&out.path().join("srv/app/data")), (1000, 1000));
        assert_eq!(owner(&out.path().join("srv/app")), (1000, 1000));
        // The existing parent is carried with its own owner.
        assert_eq!(owner(&out.path().join("srv")), (0, 0));
    }

    #[test]
    fn existing_directory_is_left_alone() {
        let l = Layers::new(1);
        l.dir(0, "srv/app");
        l.symlink(0, "work", "srv/app");
        let out = TempDir::new().unwrap();
        assert!(!make_workdir("/srv/app", Some("nobody"), &l.rootfs(), out.path()).unwrap());
        assert!(!make_workdir("/work", None, &l.rootfs(), out.path()).unwrap());
        assert!(listing(out.path()).is_empty());
    }

    #[test]
    fn a_file_in_the_way_is_an_error() {
        let l = Layers::new(1);
        l.file(0, "srv", "");
        let out = TempDir::new().unwrap();
        let err = make_workdir("/srv", None, &l.rootfs(), out.path()).unwrap_err();
        assert_eq!(err.to_string(), "/srv exists and is not a directory");
        let err = make_workdir("/srv/x", None, &l.rootfs(), out.path()).unwrap_err();
        assert!(matches!(err, FileOpError::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn symlinked_workdir_stays_inside_the_image() {
        let l = Layers::new(1);
        l.symlink(0, "app", "/../../outside");
        let out = TempDir::new().unwrap();
        assert!(make_workdir("/app/x", None, &l.rootfs(), out.path()).unwrap());
        assert_eq!(listing(out.path()), vec!["outside/", "outside/x/"]);
    }
}
