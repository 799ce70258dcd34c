//! Content digests of what a COPY/ADD selects: from the build context, or from
//! another stage's filesystem (`--from`).
//!
//! A digest covers each selected entry's path, kind, mode as the layer will
//! have it (after `--chmod`), owner when the source decides it, and content (a
//! file's bytes and extended attributes, a link's target, a device's number);
//! never times, so a fresh `git clone` of the same commit hits. Mode bits are
//! hashed as they reach the layer: under `--chmod` the checkout's umask does not
//! matter, without it the copy keeps the files' modes and so must the key.
//!
//! File contents come from the stat cache when a file's inode, size, mtime and
//! ctime are as they were when it was last hashed; the others are read and
//! hashed on several threads.
//!
//! A step's key is first computed as the walk goes, keeping no entry
//! ([`digest_cached_selection`]), and only a step that then runs (or a file the
//! stat cache does not know) selects again keeping every entry for the copy:
//! a no-op rebuild of a 200,000-file context peaked at 157 MB holding its
//! selection and 34 MB of directory listings, and at 38 MB without them.
//!
//! `COPY --from=<stage>` hashes the selected files of the stage's snapshots
//! too, rather than reusing the stage's key: a stage rebuilt for a reason that
//! does not touch the copied files (a changed test file, a reproducible
//! compiler writing the same binary) then still hits below the copy, as in
//! BuildKit. Snapshots never change after they are written, so the stat cache
//! makes this an `lstat` per selected file.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rbuild_frontend::graph::CopyOp;
use rbuild_store::{Digest, StatCache, StatKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::hasher::FieldHasher;
use super::CacheError;
use crate::engine::context::BuildContext;
use crate::engine::fileops::fsio;
use crate::engine::fileops::selection::{Content, Entry, Selection, SelectionSink};
use crate::engine::fileops::tree::Node;
use crate::engine::fileops::{select_sources, select_sources_into, CopyFrom, EntryKind, Rootfs};

/// A file changed this recently (ctime) may change again within the same
/// tick of the file system's clock without its times moving, so its digest
/// is not kept in the stat cache ("racy" entries, as git calls them).
const RACY_MARGIN: Duration = Duration::from_millis(100);
/// Files are hashed on at most this many threads.
const MAX_THREADS: usize = 8;
const READ_BUFFER: usize = 256 * 1024;

/// Where a step's input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Context,
    Stage,
    Image,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Context => "context",
            SourceKind::Stage => "stage",
            SourceKind::Image => "image",
        }
    }
}

/// The digest of a step's input, with what it covers.
#[derive(Clone, Debug)]
pub struct SourceDigest {
    pub kind: SourceKind,
    pub digest: Digest,
    /// The selected entries, for `--explain-cache` (empty for an image).
    pub files: Arc<Vec<SelectedFile>>,
    pub stats: HashStats,
}

impl SourceDigest {
    /// The input of a base image source step: the image id.
    pub fn image(id: &Digest) -> SourceDigest {
        SourceDigest {
            kind: SourceKind::Image,
            digest: id.clone(),
            files: Arc::default(),
            stats: HashStats::default(),
        }
    }
}

/// How much work a digest took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashStats {
    /// Regular files selected.
    pub files: usize,
    /// Files read and hashed.
    pub hashed: usize,
    pub hashed_bytes: u64,
    /// Files whose digest came from the stat cache.
    pub from_cache: usize,
}

/// One selected entry, as explanations compare them. Short field names keep
/// the recorded inputs of a 20,000-file COPY small.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectedFile {
    #[serde(rename = "p")]
    pub path: String,
    /// `f` file, `d` directory, `l` symlink, `h` hard link, `c`/`b` devices,
    /// `p` FIFO, `s` socket.
    #[serde(rename = "k")]
    pub kind: char,
    #[serde(rename = "m")]
    pub mode: u32,
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<(u32, u32)>,
    /// What the content is: 16 hex digits of its digest, a link's target, a
    /// hard link's first path.
    #[serde(rename = "c", default, skip_serializing_if = "String::is_empty")]
    pub content: String,
}

/// The digest of what `copy` selects from the build context.
pub fn digest_context_selection(
    ctx: &BuildContext,
    copy: &CopyOp,
    stat_cache: &mut StatCache,
) -> Result<SourceDigest, CacheError> {
    digest_copy_sources(copy, CopyFrom::Context(ctx), stat_cache).map(|(digest, _)| digest)
}

/// The digest of what `copy` (a `COPY --from`) selects from another stage's
/// filesystem. Use a stat cache opened on the store's snapshot directory.
pub fn digest_rootfs_selection(
    rootfs: &Rootfs,
    copy: &CopyOp,
    stat_cache: &mut StatCache,
) -> Result<SourceDigest, CacheError> {
    digest_copy_sources(copy, CopyFrom::Image(rootfs), stat_cache).map(|(digest, _)| digest)
}

/// The digest of the whole context, as `COPY . /` selects it: the shape a
/// benchmark of context hashing calls (cold with an empty in-memory cache,
/// warm with a filled one).
pub fn digest_whole_context(ctx: &BuildContext, stat_cache: &mut StatCache) -> Result<SourceDigest, CacheError> {
    digest_context_selection(ctx, &CopyOp::plain(&["."], "/"), stat_cache)
}

/// The digest of what `copy` selects from `from` (the build context, a
/// directory named with `--build-context`, or a stage's filesystem), and the
/// selection itself: a copy that runs after a miss writes exactly what the
/// key covers.
pub(crate) fn digest_copy_sources(
    copy: &CopyOp,
    from: CopyFrom<'_>,
    stat_cache: &mut StatCache,
) -> Result<(SourceDigest, Selection), CacheError> {
    digest_selection(copy, from, stat_cache, RACY_MARGIN)
}

pub(crate) fn digest_selection(
    copy: &CopyOp,
    from: CopyFrom<'_>,
    stat_cache: &mut StatCache,
    racy_margin: Duration,
) -> Result<(SourceDigest, Selection), CacheError> {
    let scan_start = SystemTime::now();
    let selection = select_sources(copy, from).map_err(|source| CacheError::Select {
        instruction: copy.text(),
        source,
    })?;
    let tree = from.tree();
    let kind = match from {
        CopyFrom::Context(_) => SourceKind::Context,
        CopyFrom::Image(_) => SourceKind::Stage,
    };

    let entries = &selection.entries;
    let mut stats = HashStats::default();
    let mut digests: Vec<Option<[u8; 32]>> = vec![None; entries.len()];
    let mut jobs = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if let Content::File { layer, stat } = &entry.content {
            stats.files += 1;
            match stat_cache.get(stat) {
                Some(d) => {
                    digests[i] = Some(d);
                    stats.from_cache += 1;
                }
                None => jobs.push((i, tree.layer_dir(*layer).join(entry.node.path.to_relative()), *stat)),
            }
        }
    }
    let trusted_before = scan_start.checked_sub(racy_margin).unwrap_or(UNIX_EPOCH);
    for (job, hashed) in hash_files(&jobs)? {
        let (i, _, stat) = &jobs[job];
        let i = *i;
        stats.hashed += 1;
        stats.hashed_bytes += hashed.bytes;
        if hashed.unchanged && time_of(stat.ctime) < trusted_before {
            stat_cache.insert(*stat, hashed.digest);
        }
        digests[i] = Some(hashed.digest);
    }

    let mut key = SelectionKey::new(kind);
    // One per entry: a hard link names the path of an earlier entry by its index.
    let mut files: Vec<SelectedFile> = Vec::with_capacity(entries.len());
    for item in &selection.items {
        key.item(&item.spec, &item.name, &item.node.path.to_slash_relative());
        for i in item.entries.clone() {
            let entry = &entries[i];
            let digest = digests[i];
            let (path, kind, content) = key.entry(entry, digest.as_ref(), &|first| files[first].path.clone(), true);
            files.push(SelectedFile {
                path,
                kind,
                mode: entry.mode,
                owner: entry.owner,
                content,
            });
        }
    }
    let digest = SourceDigest {
        kind,
        digest: key.h.finish(),
        files: Arc::new(files),
        stats,
    };
    Ok((digest, selection))
}

/// The digest of what `copy` selects from `from` when every selected file is in
/// the stat cache, made as the walk goes and holding nothing per entry: a no-op
/// rebuild's proof that a COPY is unchanged. `None` when a file must be read (a
/// changed or new file, or one changed too recently to be trusted): then
/// [`digest_copy_sources`] hashes what it must. The digest is the one
/// [`digest_copy_sources`] gives for the same tree; its `files` are empty
/// (explanations and records take them from [`digest_copy_sources`]).
pub(crate) fn digest_cached_selection(
    copy: &CopyOp,
    from: CopyFrom<'_>,
    stat_cache: &mut StatCache,
) -> Result<Option<SourceDigest>, CacheError> {
    let kind = match from {
        CopyFrom::Context(_) => SourceKind::Context,
        CopyFrom::Image(_) => SourceKind::Stage,
    };
    let mut sink = CachedSink {
        key: SelectionKey::new(kind),
        stat_cache,
        stats: HashStats::default(),
        linked: HashMap::new(),
    };
    let complete = select_sources_into(copy, from, &mut sink).map_err(|source| CacheError::Select {
        instruction: copy.text(),
        source,
    })?;
    Ok(complete.then(|| SourceDigest {
        kind,
        digest: sink.key.h.finish(),
        files: Arc::default(),
        stats: sink.stats,
    }))
}

/// Hashes entries as the walk gives them, their contents from the stat cache;
/// stops at the first file the cache does not know.
struct CachedSink<'c> {
    key: SelectionKey,
    stat_cache: &'c mut StatCache,
    stats: HashStats,
    /// The paths of multiply-linked files, by entry index, for later links to name.
    linked: HashMap<usize, String>,
}

impl SelectionSink for CachedSink<'_> {
    fn item(&mut self, spec: &str, name: &std::ffi::OsStr, node: &Node) {
        self.key.item(spec, name, &node.path.to_slash_relative());
    }

    fn entry(&mut self, index: usize, entry: Entry) -> bool {
        let digest = match &entry.content {
            Content::File { stat, .. } => {
                self.stats.files += 1;
                match self.stat_cache.get(stat) {
                    Some(digest) => {
                        self.stats.from_cache += 1;
                        Some(digest)
                    }
                    None => return false,
                }
            }
            _ => None,
        };
        let linked = &self.linked;
        let (path, ..) = self.key.entry(&entry, digest.as_ref(), &|first| linked[&first].clone(), false);
        if matches!(entry.content, Content::File { .. }) && entry.node.attrs.nlink > 1 {
            self.linked.insert(index, path);
        }
        true
    }
}

/// The source digest's encoding of a selection, one item and entry at a time.
struct SelectionKey {
    h: FieldHasher,
}

impl SelectionKey {
    fn new(kind: SourceKind) -> SelectionKey {
        let mut h = FieldHasher::new("rbuild-source/v1");
        h.str("kind", kind.as_str());
        SelectionKey { h }
    }

    fn item(&mut self, spec: &str, name: &std::ffi::OsStr, path: &str) {
        self.h
            .str("item-spec", spec)
            .str("item-name", &name.to_string_lossy())
            .str("item-path", path);
    }

    /// Hashes one entry (`digest`: a file's content digest); returns its path and,
    /// when `shown`, its kind and content as explanations show them.
    /// `first_path` names the entry a hard link links to.
    fn entry(
        &mut self,
        entry: &Entry,
        digest: Option<&[u8; 32]>,
        first_path: &dyn Fn(usize) -> String,
        shown: bool,
    ) -> (String, char, String) {
        let h = &mut self.h;
        let path = entry.node.path.to_slash_relative();
        let entry_kind = entry.node.attrs.kind;
        h.str("path", &path)
            .u64("kind", kind_char(entry_kind) as u64)
            .u64("mode", entry.mode as u64);
        match entry.owner {
            Some((uid, gid)) => h.u64("uid", uid as u64).u64("gid", gid as u64),
            None => h.str("owner", "forced"),
        };
        let (kind, content) = match &entry.content {
            Content::File { .. } => {
                let digest = digest.expect("every file was looked up or hashed");
                h.bytes("file", digest);
                ('f', if shown { short_hex(digest) } else { String::new() })
            }
            Content::HardLink(first) => {
                let first = first_path(*first);
                h.str("hardlink", &first);
                ('h', first)
            }
            Content::Other { link, rdev, xattrs } => {
                h.bytes("link", link).u64("rdev", *rdev);
                let xattr_digest = hash_xattrs(h, xattrs);
                let mut shown = String::from_utf8_lossy(link).into_owned();
                if *rdev != 0 {
                    shown = format!("{}:{}", rustix::fs::major(*rdev), rustix::fs::minor(*rdev));
                }
                if let Some(x) = xattr_digest {
                    shown.push_str(&format!(" xattrs {x}"));
                }
                (kind_char(entry_kind), shown)
            }
        };
        (path, kind, content)
    }
}

/// The first 8 bytes of `digest` in hex: how explanations show contents.
/// (`hex::encode` builds its string a char at a time; this runs per file.)
fn short_hex(digest: &[u8; 32]) -> String {
    let mut out = [0u8; 16];
    hex::encode_to_slice(&digest[..8], &mut out).expect("16 hex digits for 8 bytes");
    std::str::from_utf8(&out).expect("hex digits are ASCII").to_owned()
}

fn kind_char(kind: EntryKind) -> char {
    match kind {
        EntryKind::File => 'f',
        EntryKind::Directory => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::CharDevice => 'c',
        EntryKind::BlockDevice => 'b',
        EntryKind::Fifo => 'p',
        EntryKind::Socket => 's',
    }
}

fn time_of((sec, nsec): (i64, u32)) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec)
    } else {
        UNIX_EPOCH
    }
}

/// Adds extended attributes (sorted: listing order is the file system's) to
/// `h`; returns a short digest of them when there are any.
fn hash_xattrs(h: &mut FieldHasher, xattrs: &[(std::ffi::OsString, Vec<u8>)]) -> Option<String> {
    let mut sorted: Vec<_> = xattrs.iter().collect();
    sorted.sort();
    let mut own = FieldHasher::new("rbuild-xattrs/v1");
    for (name, value) in &sorted {
        own.bytes("name", name.as_encoded_bytes()).bytes("value", value);
    }
    let digest = own.finish_bytes();
    h.bytes("xattrs", &digest);
    (!sorted.is_empty()).then(|| short_hex(&digest))
}

struct Hashed {
    /// Content and extended attributes: what the stat cache keeps.
    digest: [u8; 32],
    bytes: u64,
    /// Whether the file was the one the walk saw, and unchanged while read.
    unchanged: bool,
}

/// Hashes files on several threads; results, by index into `jobs`, in no
/// particular order.
fn hash_files(jobs: &[(usize, PathBuf, StatKey)]) -> Result<Vec<(usize, Hashed)>, CacheError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(jobs.len());
    let next = AtomicUsize::new(0);
    let work = || -> Result<Vec<(usize, Hashed)>, CacheError> {
        let mut buffer = vec![0u8; READ_BUFFER];
        let mut done = Vec::new();
        loop {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let Some((_, path, stat)) = jobs.get(n) else {
                return Ok(done);
            };
            let hashed = hash_file(path, stat, &mut buffer).map_err(|source| CacheError::Hash {
                path: PathBuf::from(path),
                source,
            })?;
            done.push((n, hashed));
        }
    };
    if threads == 1 {
        return work();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
        let mut all = Vec::with_capacity(jobs.len());
        for handle in handles {
            all.extend(handle.join().expect("hashing threads do not panic")?);
        }
        Ok(all)
    })
}

fn hash_file(path: &Path, expected: &StatKey, buffer: &mut [u8]) -> std::io::Result<Hashed> {
    let mut file = fsio::open_nofollow(path)?;
    let mut sha = Sha256::new();
    let mut bytes = 0u64;
    loop {
        let n = match file.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sha.update(&buffer[..n]);
        bytes += n as u64;
    }
    let after = rustix::fs::fstat(&file)?;
    let after = StatKey {
        dev: after.st_dev,
        ino: after.st_ino,
        size: after.st_size as u64,
        mtime: (after.st_mtime, after.st_mtime_nsec as u32),
        ctime: (after.st_ctime, after.st_ctime_nsec as u32),
    };
    // Attributes that cannot be read are skipped, as the copy skips them.
    let xattrs = fsio::read_xattrs(path).unwrap_or_default();
    let content: [u8; 32] = sha.finalize().into();
    let mut h = FieldHasher::new("rbuild-file/v1");
    h.bytes("content", &content);
    hash_xattrs(&mut h, &xattrs);
    Ok(Hashed {
        digest: h.finish_bytes(),
        bytes,
        unchanged: after == *expected,
    })
}
