//! Finding what a command changed in a directory tree, and writing the
//! changes as an overlayfs-style upper directory (the chroot isolation's
//! stand-in for the overlay's upper layer).
//!
//! Before the command runs, every entry's inode number and change time are
//! recorded. The change time moves on any change to an inode (content,
//! metadata, links) and cannot be set back by the command, so an entry with
//! the same inode and change time afterwards is untouched, without comparing
//! contents. A different identity means the entry was replaced; a replaced
//! directory becomes an opaque directory in the diff, with all its contents.
//! The identity is the inode number plus, where the filesystem records it,
//! the birth time: filesystems reuse a freed inode number at once, so
//! `rm -rf d && mkdir d` often gives the new `d` the old number.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, StatxFlags, XattrFlags, CWD};

use super::error::SandboxError;
use super::fscopy::{self, Links};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Snap {
    /// Inode number and birth time (zero where not recorded).
    identity: (u64, i64, u32),
    ctime: (i64, u32),
    is_dir: bool,
}

impl Snap {
    fn of(path: &Path) -> io::Result<Self> {
        let st = rustix::fs::statx(
            CWD,
            path,
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::TYPE | StatxFlags::INO | StatxFlags::CTIME | StatxFlags::BTIME,
        )?;
        let birth = if StatxFlags::from_bits_retain(st.stx_mask).contains(StatxFlags::BTIME) {
            (st.stx_btime.tv_sec, st.stx_btime.tv_nsec)
        } else {
            (0, 0)
        };
        Ok(Snap {
            identity: (st.stx_ino, birth.0, birth.1),
            ctime: (st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec),
            is_dir: FileType::from_raw_mode(st.stx_mode.into()) == FileType::Directory,
        })
    }
}

/// The state of a tree before the command ran.
pub(crate) struct Index {
    entries: HashMap<PathBuf, Snap>,
    children: HashMap<PathBuf, Vec<OsString>>,
}

impl Index {
    pub fn scan(root: &Path) -> Result<Self, SandboxError> {
        Self::scan_except(root, &HashSet::new())
    }

    /// Records `root` without looking inside the directories `skip` (paths
    /// relative to `root`), which the diff leaves out too.
    pub fn scan_except(root: &Path, skip: &HashSet<PathBuf>) -> Result<Self, SandboxError> {
        let mut index = Index {
            entries: HashMap::new(),
            children: HashMap::new(),
        };
        index
            .scan_dir(root, PathBuf::new(), skip)
            .map_err(|e| SandboxError::io("scan", root, e))?;
        Ok(index)
    }

    fn scan_dir(&mut self, root: &Path, rel: PathBuf, skip: &HashSet<PathBuf>) -> io::Result<()> {
        let mut names = Vec::new();
        for entry in fs::read_dir(root.join(&rel))? {
            let name = entry?.file_name();
            let child = rel.join(&name);
            let snap = Snap::of(&root.join(&child))?;
            self.entries.insert(child.clone(), snap);
            if snap.is_dir && !skip.contains(&child) {
                self.scan_dir(root, child, skip)?;
            }
            names.push(name);
        }
        self.children.insert(rel, names);
        Ok(())
    }
}

/// The change detection of the chroot isolation on its own, for tools and
/// benchmarks: record a tree, let something change it, write the changes as
/// an overlayfs-style upper directory (whiteouts and opaque directories
/// marked as the current user namespace allows).
pub struct ChangeTracker {
    before: Index,
}

impl ChangeTracker {
    /// Records every entry of `tree`.
    pub fn record(tree: &Path) -> Result<Self, SandboxError> {
        Ok(ChangeTracker {
            before: Index::scan(tree)?,
        })
    }

    /// Writes what changed in `tree` since [`ChangeTracker::record`] into the
    /// empty directory `upper`; returns warnings about skipped entries.
    pub fn write_changes(&self, tree: &Path, upper: &Path) -> Result<Vec<String>, SandboxError> {
        let markers = Markers::for_namespace(super::userns::in_user_namespace());
        diff(tree, &self.before, &HashSet::new(), &HashSet::new(), upper, markers)
    }
}

/// How deletions and opaque directories are marked in the diff.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Markers {
    /// `trusted.overlay.opaque` as real root, `user.overlay.opaque` in a
    /// user namespace, where `trusted.` attributes cannot be set.
    pub opaque_xattr: &'static str,
    pub whiteout_xattr: &'static str,
}

impl Markers {
    pub fn for_namespace(in_userns: bool) -> Self {
        if in_userns {
            Markers {
                opaque_xattr: "user.overlay.opaque",
                whiteout_xattr: "user.overlay.whiteout",
            }
        } else {
            Markers {
                opaque_xattr: "trusted.overlay.opaque",
                whiteout_xattr: "trusted.overlay.whiteout",
            }
        }
    }
}

/// Writes into the empty directory `upper` what changed in `tree` since
/// `before` was taken. Entries in `injected` were put there by rbuild, not
/// by an image layer: their removal needs no whiteout. The entries in
/// `skip` (paths relative to `tree`) are not part of the diff at all. Returns warnings
/// about entries that could not be copied (sockets, refused device nodes).
pub(crate) fn diff(
    tree: &Path,
    before: &Index,
    injected: &HashSet<PathBuf>,
    skip: &HashSet<PathBuf>,
    upper: &Path,
    markers: Markers,
) -> Result<Vec<String>, SandboxError> {
    let mut writer = Writer {
        tree,
        upper,
        skip,
        warnings: Vec::new(),
        markers,
        links: Links::new(),
        made_dirs: Vec::new(),
        made: HashSet::new(),
    };
    writer
        .compare_dir(before, injected, Path::new(""))
        .map_err(|e| SandboxError::io("write the changes of", tree, e))?;
    // Creating entries inside the directories changed their times.
    for dir in writer.made_dirs.iter().rev() {
        let meta = fs::symlink_metadata(tree.join(dir))
            .map_err(|e| SandboxError::io("inspect", tree.join(dir), e))?;
        fscopy::set_times(&upper.join(dir), &meta)
            .map_err(|e| SandboxError::io("set times of", upper.join(dir), e))?;
    }
    Ok(writer.warnings)
}

struct Writer<'a> {
    tree: &'a Path,
    upper: &'a Path,
    skip: &'a HashSet<PathBuf>,
    /// What could not be carried into the diff.
    warnings: Vec<String>,
    markers: Markers,
    links: Links,
    /// Directories created in `upper`, parents first.
    made_dirs: Vec<PathBuf>,
    made: HashSet<PathBuf>,
}

impl Writer<'_> {
    fn compare_dir(
        &mut self,
        before: &Index,
        injected: &HashSet<PathBuf>,
        rel: &Path,
    ) -> io::Result<()> {
        let mut names: Vec<OsString> = fs::read_dir(self.tree.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in &names {
            let child = rel.join(name);
            if self.skip.contains(&child) {
                continue;
            }
            let meta = fs::symlink_metadata(self.tree.join(&child))?;
            let now = Snap::of(&self.tree.join(&child))?;
            match before.entries.get(&child) {
                None => self.copy_tree(&child, &meta, false)?,
                Some(old) if old.identity != now.identity => {
                    self.copy_tree(&child, &meta, old.is_dir && now.is_dir)?
                }
                Some(old) if now.is_dir => {
                    if old.ctime != now.ctime {
                        self.ensure_dir(&child, &meta)?;
                    }
                    self.compare_dir(before, injected, &child)?;
                }
                Some(old) if old.ctime != now.ctime => self.copy_tree(&child, &meta, false)?,
                Some(_) => {}
            }
        }
        if let Some(old_names) = before.children.get(rel) {
            let now: HashSet<&OsString> = names.iter().collect();
            for name in old_names.iter().filter(|n| !now.contains(n)) {
                let child = rel.join(name);
                if !injected.contains(&child) && !self.skip.contains(&child) {
                    self.whiteout(&child)?;
                }
            }
        }
        Ok(())
    }

    /// Copies the entry at `rel` (a whole directory with its contents) into
    /// the diff; `opaque` marks a directory that replaced an older one.
    fn copy_tree(&mut self, rel: &Path, meta: &fs::Metadata, opaque: bool) -> io::Result<()> {
        self.ensure_parents(rel)?;
        let src = self.tree.join(rel);
        let dst = self.upper.join(rel);
        if !meta.is_dir() {
            if let Some(warning) = fscopy::copy_entry(&src, &dst, meta, &mut self.links)? {
                self.warnings.push(warning);
            }
            return Ok(());
        }
        self.make_dir(rel, meta)?;
        if opaque {
            set_marker(&dst, self.markers.opaque_xattr)?;
        }
        let mut names: Vec<OsString> = fs::read_dir(&src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let child = rel.join(name);
            let child_meta = fs::symlink_metadata(self.tree.join(&child))?;
            self.copy_tree(&child, &child_meta, false)?;
        }
        Ok(())
    }

    /// A changed directory: present in the diff with its new metadata, its
    /// contents merging with the layers below.
    fn ensure_dir(&mut self, rel: &Path, meta: &fs::Metadata) -> io::Result<()> {
        self.ensure_parents(rel)?;
        if !self.made.contains(rel) {
            self.make_dir(rel, meta)?;
        }
        Ok(())
    }

    /// The parents of an entry of the diff exist in it, as overlayfs's
    /// copy-up would have made them.
    fn ensure_parents(&mut self, rel: &Path) -> io::Result<()> {
        let parents: Vec<PathBuf> = rel
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .collect();
        for parent in parents.into_iter().rev() {
            if !self.made.contains(&parent) {
                let meta = fs::symlink_metadata(self.tree.join(&parent))?;
                self.make_dir(&parent, &meta)?;
            }
        }
        Ok(())
    }

    fn make_dir(&mut self, rel: &Path, meta: &fs::Metadata) -> io::Result<()> {
        let dst = self.upper.join(rel);
        fs::create_dir(&dst)?;
        fscopy::apply_metadata(&self.tree.join(rel), &dst, meta)?;
        self.made.insert(rel.to_path_buf());
        self.made_dirs.push(rel.to_path_buf());
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path) -> io::Result<()> {
        self.ensure_parents(rel)?;
        let dst = self.upper.join(rel);
        match rustix::fs::mknodat(CWD, &dst, FileType::CharacterDevice, Mode::empty(), 0) {
            Ok(()) => Ok(()),
            // Where even a 0:0 device node is refused, overlayfs's other
            // whiteout form: an empty file with the whiteout attribute.
            Err(rustix::io::Errno::PERM) => {
                fs::File::create(&dst)?;
                set_marker(&dst, self.markers.whiteout_xattr)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Sets an overlayfs marker attribute. `trusted.*` needs CAP_SYS_ADMIN, which
/// root inside an unprivileged container lacks: there the `user.*` form of
/// the same marker is written instead (the layer writer reads both).
fn set_marker(path: &Path, name: &str) -> io::Result<()> {
    match rustix::fs::lsetxattr(path, name, b"y", XattrFlags::empty()) {
        Err(rustix::io::Errno::PERM) if name.starts_with("trusted.") => {
            let user_name = format!("user.{}", &name["trusted.".len()..]);
            rustix::fs::lsetxattr(path, user_name.as_str(), b"y", XattrFlags::empty())
                .map_err(Into::into)
        }
        other => other.map_err(Into::into),
    }
}
