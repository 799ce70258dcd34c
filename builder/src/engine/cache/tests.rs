//! Step cache tests: key stability and sensitivity, context hashing and its
//! stat cache, selection rules against the copy itself, explanations, and
//! records that restore a step.

use std::collections::HashMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rbuild_frontend::graph::{CopyOp, HistoryEntry, InlineFile, Op, Platform, RunHeredoc, RunOp, Source, Step};
use rbuild_frontend::instructions::Location;
use rbuild_store::{CacheRecord, Digest, LayerOptions, StatCache, Store};
use tempfile::TempDir;

use super::source::digest_selection;
use super::*;
use crate::engine::context::BuildContext;
use crate::engine::fileops::{copy_into, CopyFrom, CopyRequest, Rootfs};
use rbuild_sandbox::NetworkMode;

/// A named change to an operation, for tables of cache-key variants.
type Variant<Op> = (&'static str, Box<dyn Fn(&mut Op)>);
/// A named change to a file of a test context.
type FileChange = (&'static str, Box<dyn Fn(&Path)>);

// ---- helpers ---------------------------------------------------------------

fn write(root: &Path, rel: &str, content: &str, mode: u32) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// A context with nested directories, a symlink and enough files that hashing
/// runs on several threads.
fn sample_context() -> TempDir {
    let dir = TempDir::new().unwrap();
    for i in 0..40 {
        write(dir.path(), &format!("src/m{}/f{i}.rs", i % 4), &format!("fn f{i}() {{}}\n"), 0o644);
    }
    write(dir.path(), "run.sh", "#!/bin/sh\necho hi\n", 0o755);
    write(dir.path(), "README.md", "hello\n", 0o644);
    symlink("src/m0", dir.path().join("link")).unwrap();
    dir
}

/// The digest with a fresh in-memory stat cache; no racy margin, so files
/// written just before are cached like any others.
fn digest_of(root: &Path, copy: &CopyOp) -> SourceDigest {
    digest_with(root, copy, &mut StatCache::in_memory(), Duration::ZERO)
}

fn digest_with(root: &Path, copy: &CopyOp, cache: &mut StatCache, margin: Duration) -> SourceDigest {
    let ctx = BuildContext::open(root, None).unwrap();
    digest_selection(copy, CopyFrom::Context(&ctx), cache, margin).unwrap().0
}

fn params() -> KeyParams {
    KeyParams {
        platform: Platform::parse("linux/amd64").unwrap(),
        source_date_epoch: None,
        default_network: NetworkMode::Host,
    }
}

fn step(op: Op, line: usize) -> Step {
    let created_by = match &op {
        Op::Config => "LABEL a=1".to_string(),
        _ => "whatever # buildkit".to_string(),
    };
    Step {
        stage: Some(0),
        op,
        location: Some(Location { start_line: line, end_line: line }),
        display: "DISPLAY".into(),
        history: Some(HistoryEntry { created_by, empty_layer: false }),
    }
}

fn run_op(argv: &[&str], env: &[(&str, &str)]) -> RunOp {
    RunOp {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        user: String::new(),
        workdir: "/".into(),
        heredocs: Vec::new(),
        network: None,
        security: None,
        mounts: Vec::new(),
    }
}

fn scratch_key() -> CacheKey {
    key_for_step(&step(Op::Source(Source::Scratch), 1), None, None, &params()).0
}

/// FROM scratch → COPY . /app → RUN with many variables: the key of the RUN.
fn chain_key(root: &Path) -> Digest {
    let copy = CopyOp::plain(&["."], "/app/");
    let source = digest_of(root, &copy);
    let copied = key_for_step(&step(Op::Copy(copy), 2), Some(&scratch_key()), Some(&source), &params()).0;
    let env: Vec<(String, String)> = (0..30).map(|i| (format!("V{i}"), format!("value {i}"))).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = step(Op::Run(run_op(&["/bin/sh", "-c", "make"], &env)), 3);
    key_for_step(&run, Some(&copied), None, &params()).0.digest().clone()
}

fn set_times(path: &Path, secs: i64) {
    let t = filetime::FileTime::from_unix_time(secs, 0);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

fn all_paths(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.symlink_metadata().unwrap().is_dir() {
                todo.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

fn temp_store() -> (TempDir, Store) {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

// ---- key stability -----------------------------------------------------------

const CHILD_CONTEXT: &str = "RBUILD_CACHE_TEST_CHILD_CONTEXT";

#[test]
fn keys_are_the_same_in_another_process() {
    if let Some(dir) = std::env::var_os(CHILD_CONTEXT) {
        println!("key={}", chain_key(Path::new(&dir)).hex());
        return;
    }
    let ctx = sample_context();
    // The test's name as the test binary knows it: its module path without the crate.
    let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
    let name = format!("{module}::keys_are_the_same_in_another_process");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &name, "--nocapture"])
        .env(CHILD_CONTEXT, ctx.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let child = stdout
        .lines()
        .find_map(|l| l.strip_prefix("key="))
        .unwrap_or_else(|| panic!("the child printed no key: {stdout}"));
    assert_eq!(child, chain_key(ctx.path()).hex());
}

#[test]
fn keys_ignore_where_the_context_is_and_file_times() {
    let a = sample_context();
    let b = sample_context();
    // Another clone: other inodes, another directory, other times everywhere.
    for (i, path) in all_paths(b.path()).iter().enumerate() {
        set_times(path, 1_000_000 + i as i64);
    }
    assert_eq!(chain_key(a.path()), chain_key(b.path()));

    // Touching a file changes no key, though the stat cache hashes it again.
    let copy = CopyOp::plain(&["src"], "/src/");
    let mut cache = StatCache::in_memory();
    let first = digest_with(a.path(), &copy, &mut cache, Duration::ZERO);
    set_times(&a.path().join("src/m1/f1.rs"), 42);
    let second = digest_with(a.path(), &copy, &mut cache, Duration::ZERO);
    assert_eq!(first.digest, second.digest);
    assert_eq!((second.stats.hashed, second.stats.from_cache), (1, 39));
}

#[test]
fn modes_count_as_the_layer_has_them_so_the_umask_of_a_checkout_does_not_under_chmod() {
    // The same checkout under umask 022 and umask 002.
    let strict = sample_context();
    let loose = sample_context();
    for path in all_paths(loose.path()) {
        let meta = path.symlink_metadata().unwrap();
        if !meta.file_type().is_symlink() {
            let mode = meta.permissions().mode() & 0o7777;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o020)).unwrap();
        }
    }
    for chmod in ["go-w", "0644", "u=rwX,go=rX"] {
        let mut copy = CopyOp::plain(&["."], "/app/");
        copy.chmod = Some(chmod.into());
        assert_eq!(
            digest_of(strict.path(), &copy).digest,
            digest_of(loose.path(), &copy).digest,
            "--chmod={chmod}"
        );
    }
    // Without --chmod the copy keeps 0664, so the layer differs and so must the key.
    let copy = CopyOp::plain(&["."], "/app/");
    assert_ne!(digest_of(strict.path(), &copy).digest, digest_of(loose.path(), &copy).digest);
}

// ---- key sensitivity ---------------------------------------------------------

#[test]
fn every_input_of_a_step_changes_its_key() {
    let ctx = sample_context();
    let base_copy = CopyOp::plain(&["src", "run.sh"], "/app/");
    let source = digest_of(ctx.path(), &base_copy);
    let parent = scratch_key();
    let mut keys: Vec<(String, Digest)> = Vec::new();
    let mut add = |name: &str, step: Step, parent: Option<&CacheKey>, source: Option<&SourceDigest>, params: &KeyParams| {
        keys.push((name.to_string(), key_for_step(&step, parent, source, params).0.digest().clone()));
    };
    let copy_variants: Vec<Variant<CopyOp>> = vec![
        ("base copy", Box::new(|_| {})),
        ("sources", Box::new(|c| c.sources.push("README.md".into()))),
        ("dest", Box::new(|c| c.dest = "/other/".into())),
        ("workdir", Box::new(|c| c.workdir = "/w".into())),
        ("chown", Box::new(|c| c.chown = Some("1:1".into()))),
        ("chmod", Box::new(|c| c.chmod = Some("0600".into()))),
        ("link", Box::new(|c| c.link = true)),
        ("parents", Box::new(|c| c.parents = true)),
        ("exclude", Box::new(|c| c.exclude = vec!["*.md".into()])),
        ("add", Box::new(|c| c.is_add = true)),
        ("unpack", Box::new(|c| c.unpack = Some(false))),
        ("checksum", Box::new(|c| c.checksum = Some("sha256:00".into()))),
        ("inline", Box::new(|c| c.inline_files = vec![InlineFile { name: "f".into(), content: "x".into() }])),
        ("inline content", Box::new(|c| c.inline_files = vec![InlineFile { name: "f".into(), content: "y".into() }])),
    ];
    for (name, change) in &copy_variants {
        let mut copy = base_copy.clone();
        change(&mut copy);
        add(name, step(Op::Copy(copy), 2), Some(&parent), Some(&source), &params());
    }
    let copy_step = step(Op::Copy(base_copy.clone()), 2);
    // The files the copy selects.
    let file_changes: Vec<FileChange> = vec![
        ("content", Box::new(|r| drop(write(r, "src/m0/f0.rs", "changed", 0o644)))),
        ("mode", Box::new(|r| std::fs::set_permissions(r.join("run.sh"), std::fs::Permissions::from_mode(0o700)).unwrap())),
        ("new file", Box::new(|r| drop(write(r, "src/m0/new.rs", "", 0o644)))),
        ("removed file", Box::new(|r| std::fs::remove_file(r.join("src/m2/f2.rs")).unwrap())),
        ("renamed file", Box::new(|r| std::fs::rename(r.join("src/m2/f2.rs"), r.join("src/m2/g2.rs")).unwrap())),
        ("new symlink", Box::new(|r| symlink("f0.rs", r.join("src/m0/l")).unwrap())),
        ("dir mode", Box::new(|r| std::fs::set_permissions(r.join("src/m3"), std::fs::Permissions::from_mode(0o700)).unwrap())),
    ];
    for (name, change) in &file_changes {
        let ctx = sample_context();
        change(ctx.path());
        let changed = digest_of(ctx.path(), &base_copy);
        add(name, copy_step.clone(), Some(&parent), Some(&changed), &params());
    }
    let other_parent = key_for_step(&step(Op::Workdir { path: "/x".into(), user: String::new() }, 1), Some(&parent), None, &params()).0;
    add("parent", copy_step.clone(), Some(&other_parent), Some(&source), &params());
    add("platform", copy_step.clone(), Some(&parent), Some(&source), &KeyParams { platform: Platform::parse("linux/arm64/v8").unwrap(), ..params() });
    add("epoch", copy_step.clone(), Some(&parent), Some(&source), &KeyParams { source_date_epoch: Some(0), ..params() });

    let base_run = run_op(&["/bin/sh", "-c", "make"], &[("A", "1")]);
    let run_variants: Vec<Variant<RunOp>> = vec![
        ("base run", Box::new(|_| {})),
        ("argv", Box::new(|r| r.argv[2] = "make all".into())),
        ("argv split", Box::new(|r| r.argv = vec!["/bin/sh".into(), "-c make".into()])),
        ("env value", Box::new(|r| r.env[0].1 = "2".into())),
        ("env added", Box::new(|r| r.env.push(("B".into(), "1".into())))),
        ("env order", Box::new(|r| r.env.insert(0, ("B".into(), "1".into())))),
        ("user", Box::new(|r| r.user = "nobody".into())),
        ("run workdir", Box::new(|r| r.workdir = "/src".into())),
        ("network", Box::new(|r| r.network = Some("none".into()))),
        ("security", Box::new(|r| r.security = Some("sandbox".into()))),
        ("heredoc", Box::new(|r| r.heredocs = vec![RunHeredoc { name: "EOF".into(), content: "a".into(), file_descriptor: 0 }])),
        ("heredoc content", Box::new(|r| r.heredocs = vec![RunHeredoc { name: "EOF".into(), content: "b".into(), file_descriptor: 0 }])),
        ("heredoc fd", Box::new(|r| r.heredocs = vec![RunHeredoc { name: "EOF".into(), content: "b".into(), file_descriptor: 3 }])),
    ];
    for (name, change) in &run_variants {
        let mut run = base_run.clone();
        change(&mut run);
        add(name, step(Op::Run(run), 3), Some(&parent), None, &params());
    }
    add("workdir step", step(Op::Workdir { path: "/a".into(), user: String::new() }, 4), Some(&parent), None, &params());
    add("workdir user", step(Op::Workdir { path: "/a".into(), user: "app".into() }, 4), Some(&parent), None, &params());
    add("config", step(Op::Config, 5), Some(&parent), None, &params());
    add("image", step(Op::Source(Source::Image("alpine".into())), 1), None, Some(&SourceDigest::image(&Digest::of_bytes(b"id1"))), &params());
    add("image id", step(Op::Source(Source::Image("alpine".into())), 1), None, Some(&SourceDigest::image(&Digest::of_bytes(b"id2"))), &params());
    add("scratch", step(Op::Source(Source::Scratch), 1), None, None, &params());

    let mut seen: HashMap<&Digest, &str> = HashMap::new();
    for (name, key) in &keys {
        if let Some(other) = seen.insert(key, name) {
            panic!("{name:?} and {other:?} have the same key");
        }
    }
}

#[test]
fn what_does_not_change_a_build_does_not_change_its_key() {
    let parent = scratch_key();
    let run = |env: &[(&str, &str)]| {
        let op = Op::Run(run_op(&["make"], env));
        key_for_step(&step(op, 3), Some(&parent), None, &params()).0
    };
    // Proxies are where a download goes, not what it builds (as in BuildKit).
    assert_eq!(run(&[("A", "1")]), run(&[("A", "1"), ("HTTPS_PROXY", "http://p:3128")]));
    // `--network=default` is the default network.
    let mut explicit = run_op(&["make"], &[]);
    explicit.network = Some("default".into());
    assert_eq!(
        key_for_step(&step(Op::Run(explicit), 3), Some(&parent), None, &params()).0,
        key_for_step(&step(Op::Run(run_op(&["make"], &[])), 3), Some(&parent), None, &params()).0,
    );
    // The default network counts as the network the sandbox will use.
    let no_network = KeyParams { default_network: NetworkMode::None, ..params() };
    let mut none = run_op(&["make"], &[]);
    none.network = Some("none".into());
    let by_default = key_for_step(&step(Op::Run(run_op(&["make"], &[])), 3), Some(&parent), None, &no_network).0;
    assert_ne!(by_default, run(&[]));
    assert_eq!(by_default, key_for_step(&step(Op::Run(none), 3), Some(&parent), None, &params()).0);
    // The same step on another line keeps its key.
    assert_eq!(
        key_for_step(&step(Op::Run(run_op(&["make"], &[])), 30), Some(&parent), None, &params()).0,
        run(&[]),
    );
}

#[test]
fn a_config_step_keys_its_record_but_not_the_steps_after_it() {
    let parent = scratch_key();
    let label = |text: &str| {
        let mut s = step(Op::Config, 2);
        s.history.as_mut().unwrap().created_by = text.into();
        key_for_step(&s, Some(&parent), None, &params()).0
    };
    let (one, two) = (label("LABEL v=1"), label("LABEL v=2"));
    assert_ne!(one, two, "each label has its own record");
    let run = |after: &CacheKey| {
        let (key, inputs) = key_for_step(&step(Op::Run(run_op(&["make"], &[])), 3), Some(after), None, &params());
        assert_eq!(inputs.parent.as_ref().unwrap().line, Some(1), "the filesystem was made on line 1");
        key
    };
    assert_eq!(run(&one), run(&two));
    assert_eq!(run(&one), run(&parent));
}

// ---- selection and hashing -------------------------------------------------------

/// COPYs of [`sample_context`] that select in each way: a directory, wildcards, a
/// symlinked source, `--exclude`, `--parents`, everything.
fn selection_cases() -> Vec<(&'static str, CopyOp)> {
    vec![
        ("directory", CopyOp::plain(&["src/m1"], "/app/")),
        ("wildcards", CopyOp::plain(&["src/*/f1*.rs", "*.md"], "/app/")),
        ("symlinked source", CopyOp::plain(&["link"], "/app/")),
        ("exclude", CopyOp { exclude: vec!["**/f1*".into(), "!**/f13.rs".into()], ..CopyOp::plain(&["src"], "/app/") }),
        ("parents", CopyOp { parents: true, ..CopyOp::plain(&["src/./m2/*.rs"], "/app/") }),
        ("everything", CopyOp::plain(&["."], "/app/")),
    ]
}

#[test]
fn the_digest_covers_exactly_the_files_the_copy_copies() {
    let cases = selection_cases();
    for (name, copy) in cases {
        let ctx = sample_context();
        write(ctx.path(), ".dockerignore", "src/m3/f3.rs\n*.log\n", 0o644);
        write(ctx.path(), "debug.log", "ignored", 0o644);
        let base = digest_of(ctx.path(), &copy);

        // The copy itself writes as many files as the digest covers.
        let context = BuildContext::open(ctx.path(), None).unwrap();
        let out = TempDir::new().unwrap();
        let stats = copy_into(CopyRequest::from(&copy), CopyFrom::Context(&context), &Rootfs::empty(), out.path()).unwrap();
        let selected: Vec<&SelectedFile> = base.files.iter().filter(|f| f.kind == 'f').collect();
        assert_eq!(stats.files as usize, selected.len(), "{name}: {selected:?}");
        assert_eq!(base.stats.files, selected.len(), "{name}");

        // Editing a file changes the digest exactly when the copy copies it.
        for path in all_paths(ctx.path()) {
            if !path.symlink_metadata().unwrap().is_file() {
                continue;
            }
            let rel = path.strip_prefix(ctx.path()).unwrap().to_string_lossy().into_owned();
            if rel == ".dockerignore" {
                continue; // Editing it changes the rules, not just a file.
            }
            let original = std::fs::read(&path).unwrap();
            std::fs::write(&path, b"edited").unwrap();
            let edited = digest_of(ctx.path(), &copy);
            std::fs::write(&path, &original).unwrap();
            let copied = selected.iter().any(|f| f.path == rel);
            assert_eq!(edited.digest != base.digest, copied, "{name}: editing {rel}");
        }
    }
}

#[test]
fn a_selection_the_stat_cache_knows_whole_is_digested_alike_without_keeping_it() {
    let cases = selection_cases();
    let ctx = sample_context();
    write(ctx.path(), ".dockerignore", "src/m3/f3.rs\n*.log\n", 0o644);
    write(ctx.path(), "debug.log", "ignored", 0o644);
    std::fs::hard_link(ctx.path().join("README.md"), ctx.path().join("src/m1/linked.md")).unwrap();
    let context = BuildContext::open(ctx.path(), None).unwrap();
    let cached = |copy: &CopyOp, cache: &mut StatCache| {
        super::source::digest_cached_selection(copy, CopyFrom::Context(&context), cache).unwrap()
    };
    for (name, copy) in cases {
        let mut cache = StatCache::in_memory();
        assert!(cached(&copy, &mut cache).is_none(), "{name}: an empty cache proves nothing");
        let full = digest_with(ctx.path(), &copy, &mut cache, Duration::ZERO);
        let proven = cached(&copy, &mut cache).unwrap_or_else(|| panic!("{name}: every file is cached"));
        assert_eq!(proven.digest, full.digest, "{name}");
        assert_eq!(proven.kind, full.kind, "{name}");
        assert_eq!(proven.stats.files, full.stats.files, "{name}");
        assert_eq!(proven.stats.from_cache, full.stats.files, "{name}");
        assert!(proven.files.is_empty(), "{name}: nothing per file is kept");
    }
    // A file the cache does not know (here: edited) stops the proof.
    let copy = CopyOp::plain(&["."], "/app/");
    let mut cache = StatCache::in_memory();
    digest_with(ctx.path(), &copy, &mut cache, Duration::ZERO);
    std::fs::write(ctx.path().join("src/m2/f2.rs"), "edited").unwrap();
    assert!(cached(&copy, &mut cache).is_none());
}

#[test]
fn hard_links_symlinks_and_owners_are_part_of_the_digest() {
    let copy = CopyOp::plain(&["."], "/app/");
    let linked = TempDir::new().unwrap();
    write(linked.path(), "a", "same", 0o644);
    std::fs::hard_link(linked.path().join("a"), linked.path().join("b")).unwrap();
    let copied = TempDir::new().unwrap();
    write(copied.path(), "a", "same", 0o644);
    write(copied.path(), "b", "same", 0o644);
    let linked_digest = digest_of(linked.path(), &copy);
    assert_ne!(linked_digest.digest, digest_of(copied.path(), &copy).digest, "a hard link is copied as one");
    assert_eq!(linked_digest.stats.files, 1, "the link is not hashed again");

    symlink("a", copied.path().join("l")).unwrap();
    let before = digest_of(copied.path(), &copy).digest;
    std::fs::remove_file(copied.path().join("l")).unwrap();
    symlink("b", copied.path().join("l")).unwrap();
    assert_ne!(before, digest_of(copied.path(), &copy).digest, "a link's target counts");

    if !rustix::process::geteuid().is_root() {
        return;
    }
    // Context files belong to root in the image whoever owns them; a stage's
    // files keep their owners.
    let before = digest_of(copied.path(), &copy).digest;
    let rootfs = Rootfs { layers: vec![copied.path().to_path_buf()] };
    let stage = |cache: &mut StatCache| super::digest_rootfs_selection(&rootfs, &copy, cache).unwrap().digest;
    let stage_before = stage(&mut StatCache::in_memory());
    std::os::unix::fs::lchown(copied.path().join("a"), Some(1000), Some(1000)).unwrap();
    assert_eq!(before, digest_of(copied.path(), &copy).digest);
    assert_ne!(stage_before, stage(&mut StatCache::in_memory()));
}

#[test]
fn extended_attributes_count_and_changing_them_bypasses_the_stat_cache() {
    let ctx = sample_context();
    let file = ctx.path().join("README.md");
    let copy = CopyOp::plain(&["README.md"], "/");
    let mut cache = StatCache::in_memory();
    let before = digest_with(ctx.path(), &copy, &mut cache, Duration::ZERO);
    if rustix::fs::setxattr(&file, "user.rbuild-test", b"1", rustix::fs::XattrFlags::empty()).is_err() {
        return; // The file system of the temp dir has no user xattrs.
    }
    let after = digest_with(ctx.path(), &copy, &mut cache, Duration::ZERO);
    assert_ne!(before.digest, after.digest);
    assert_eq!(after.stats.hashed, 1, "the attribute change moved ctime");
}

#[test]
fn the_stat_cache_spares_reading_unchanged_files_across_processes() {
    let ctx = sample_context();
    let (_dir, store) = temp_store();
    let copy = CopyOp::plain(&["."], "/app/");
    let root = ctx.path().canonicalize().unwrap();

    let mut cache = store.stat_cache(&root).unwrap();
    let cold = digest_with(ctx.path(), &copy, &mut cache, Duration::ZERO);
    assert_eq!((cold.stats.hashed, cold.stats.from_cache), (42, 0));
    assert!(cold.stats.hashed_bytes > 0);
    cache.save().unwrap();

    // A later build: a fresh cache loaded from the store reads nothing.
    let mut cache = store.stat_cache(&root).unwrap();
    let warm = digest_with(ctx.path(), &copy, &mut cache, Duration::ZERO);
    assert_eq!(warm.digest, cold.digest);
    assert_eq!((warm.stats.hashed, warm.stats.from_cache, warm.stats.hashed_bytes), (0, 42, 0));

    // An edit is seen even when size and mtime stay the same: ctime moved.
    let edited = ctx.path().join("src/m0/f0.rs");
    let mtime = filetime::FileTime::from_last_modification_time(&edited.metadata().unwrap());
    std::fs::write(&edited, "fn g0() {}\n").unwrap();
    filetime::set_file_mtime(&edited, mtime).unwrap();
    let after = digest_with(ctx.path(), &copy, &mut cache, Duration::ZERO);
    assert_eq!(after.stats.hashed, 1);
    assert_ne!(after.digest, cold.digest);
}

#[test]
fn files_changed_just_before_the_scan_are_not_trusted_to_the_stat_cache() {
    let ctx = sample_context();
    let copy = CopyOp::plain(&["."], "/app/");
    let mut cache = StatCache::in_memory();
    // Everything was written within the hour: all of it is "racy".
    let hour = Duration::from_secs(3600);
    let first = digest_with(ctx.path(), &copy, &mut cache, hour);
    let second = digest_with(ctx.path(), &copy, &mut cache, hour);
    assert_eq!(first.digest, second.digest);
    assert_eq!((second.stats.hashed, second.stats.from_cache), (42, 0));
    assert!(cache.is_empty());
}

#[test]
fn the_public_context_digest_is_the_whole_context() {
    let ctx = sample_context();
    let context = BuildContext::open(ctx.path(), None).unwrap();
    let whole = digest_whole_context(&context, &mut StatCache::in_memory()).unwrap();
    let through_copy = digest_context_selection(&context, &CopyOp::plain(&["."], "/"), &mut StatCache::in_memory()).unwrap();
    assert_eq!(whole.digest, through_copy.digest);
    assert_eq!(whole.digest, digest_of(ctx.path(), &CopyOp::plain(&["."], "/")).digest);
    assert_eq!(whole.stats.files, 42);
    let missing = digest_context_selection(&context, &CopyOp::plain(&["nope"], "/"), &mut StatCache::in_memory());
    let err = missing.unwrap_err().to_string();
    assert!(err.contains("COPY nope /") && err.contains("not found"), "{err}");
}

// ---- records and explanations -----------------------------------------------------

#[test]
fn a_hit_restores_the_layer_and_its_snapshot_without_running_the_step() {
    let (_dir, store) = temp_store();
    let index = store.cache_index().unwrap();
    let diff = TempDir::new().unwrap();
    write(diff.path(), "app/out.txt", "built", 0o644);
    let layer = store.write_layer(diff.path(), &LayerOptions::default()).unwrap();
    let key = key_for_step(&step(Op::Run(run_op(&["make"], &[])), 3), Some(&scratch_key()), None, &params());
    assert_eq!(lookup(&index, &key.0).unwrap(), None);
    let stored = CacheRecord {
        layer: Some(layer.clone()),
        created_by: Some("RUN make # buildkit".into()),
        empty_layer: false,
        created: Some("2024-05-01T00:00:00Z".into()),
        last_used: None,
    };
    record(&index, &key.0, &stored, None, &key.1).unwrap();

    let hit = lookup(&index, &key.0).unwrap().expect("a hit");
    assert_eq!(hit.layer.as_ref(), Some(&layer));
    assert_eq!(hit.created_by, stored.created_by);
    // No snapshot was ever made: the hit unpacks it from the layer.
    let snapshot = store.ensure_snapshot(&layer).unwrap();
    assert_eq!(std::fs::read_to_string(snapshot.join("app/out.txt")).unwrap(), "built");
}

/// Records `inputs` as the last build of the step, then explains `now`.
fn explain(now: &KeyInputs, earlier: &[&KeyInputs]) -> Explanation {
    let (_dir, store) = temp_store();
    let index = store.cache_index().unwrap();
    let identity = StepIdentity { dockerfile: "Dockerfile".into(), stage: "build".into(), position: 2 };
    for (i, inputs) in earlier.iter().enumerate() {
        let key = Digest::from_sha256([i as u8; 32]);
        index
            .remember_inputs(&identity.digest(), &key, &serde_json::to_vec(inputs).unwrap())
            .unwrap();
    }
    explain_miss(&index, &identity, now)
}

#[test]
fn explains_a_file_change_by_name() {
    let ctx = sample_context();
    let copy = CopyOp::plain(&["src"], "/app/");
    let before = key_for_step(&step(Op::Copy(copy.clone()), 2), Some(&scratch_key()), Some(&digest_of(ctx.path(), &copy)), &params()).1;
    write(ctx.path(), "src/m1/f5.rs", "changed", 0o644);
    write(ctx.path(), "src/m1/new.rs", "", 0o644);
    std::fs::remove_file(ctx.path().join("src/m2/f2.rs")).unwrap();
    let after = key_for_step(&step(Op::Copy(copy.clone()), 2), Some(&scratch_key()), Some(&digest_of(ctx.path(), &copy)), &params()).1;
    let explanation = explain(&after, &[&before]);
    assert_eq!(
        explanation.to_string(),
        "files changed: src/m1/f5.rs; files added: src/m1/new.rs; files removed: src/m2/f2.rs"
    );
    let json = serde_json::to_value(&explanation).unwrap();
    assert_eq!(json["kind"], "changed");
    assert_eq!(json["differences"][0]["what"], "files");
    assert_eq!(json["differences"][0]["changed"][0], "src/m1/f5.rs");

    // Many changes: ten names, then a count.
    for i in 0..40 {
        write(ctx.path(), &format!("src/m{}/f{i}.rs", i % 4), "again", 0o644);
    }
    let many = key_for_step(&step(Op::Copy(CopyOp::plain(&["src"], "/app/")), 2), Some(&scratch_key()), Some(&digest_of(ctx.path(), &CopyOp::plain(&["src"], "/app/"))), &params()).1;
    let text = explain(&many, &[&before]).to_string();
    assert!(text.ends_with("and 31 more"), "{text}");
}

fn run_inputs(argv: &[&str], env: &[(&str, &str)], parent: &CacheKey) -> KeyInputs {
    key_for_step(&step(Op::Run(run_op(argv, env)), 7), Some(parent), None, &params()).1
}

#[test]
fn explains_a_build_arg_change_an_instruction_change_and_a_parent_change() {
    let parent = scratch_key();
    let before = run_inputs(&["/bin/sh", "-c", "make"], &[("VERSION", "1.0"), ("API_TOKEN", "s3cret")], &parent);

    let arg = run_inputs(&["/bin/sh", "-c", "make"], &[("VERSION", "1.1"), ("API_TOKEN", "s3cret")], &parent);
    assert_eq!(explain(&arg, &[&before]).to_string(), "variable VERSION changed: \"1.0\" → \"1.1\"");

    let secret = run_inputs(&["/bin/sh", "-c", "make"], &[("VERSION", "1.0"), ("API_TOKEN", "other")], &parent);
    let text = explain(&secret, &[&before]).to_string();
    assert_eq!(text, "variable API_TOKEN changed: \"(hidden)\" → \"(hidden)\"");
    assert!(!serde_json::to_string(&before).unwrap().contains("s3cret"), "secrets are not recorded");

    let instruction = run_inputs(&["/bin/sh", "-c", "make all"], &[("VERSION", "1.0"), ("API_TOKEN", "s3cret")], &parent);
    assert_eq!(
        explain(&instruction, &[&before]).to_string(),
        "instruction changed: \"RUN /bin/sh -c make\" → \"RUN /bin/sh -c make all\""
    );

    let workdir = key_for_step(&step(Op::Workdir { path: "/src".into(), user: String::new() }, 4), Some(&parent), None, &params()).0;
    let moved = run_inputs(&["/bin/sh", "-c", "make"], &[("VERSION", "1.0"), ("API_TOKEN", "s3cret")], &workdir);
    let explanation = explain(&moved, &[&before]);
    assert_eq!(explanation.to_string(), "parent changed: line 4");
    assert_eq!(
        serde_json::to_value(&explanation).unwrap()["differences"][0],
        serde_json::json!({"what": "parent", "line": 4})
    );
}

#[test]
fn explains_against_the_closest_earlier_build() {
    let parent = scratch_key();
    let now = run_inputs(&["make"], &[("A", "1"), ("B", "1")], &parent);
    let far = run_inputs(&["make", "all"], &[("A", "2"), ("B", "2")], &parent);
    let near = run_inputs(&["make"], &[("A", "1"), ("B", "2")], &parent);
    assert_eq!(explain(&now, &[&far, &near]).to_string(), "variable B changed: \"2\" → \"1\"");
    assert_eq!(explain(&now, &[&near, &far]).to_string(), "variable B changed: \"2\" → \"1\"");
    assert_eq!(explain(&now, &[]), Explanation::FirstBuild);
    assert_eq!(explain(&now, &[&far, &now]), Explanation::SameInputs);
    assert_eq!(
        explain(&run_inputs(&["make"], &[("A", "1")], &parent), &[&now]).to_string(),
        "variable B removed (was \"1\")"
    );
}

#[test]
fn record_remembers_inputs_by_step_identity() {
    let (_dir, store) = temp_store();
    let index = store.cache_index().unwrap();
    let identity = StepIdentity { dockerfile: "Dockerfile".into(), stage: "0".into(), position: 0 };
    let parent = scratch_key();
    let (key, inputs) = key_for_step(&step(Op::Run(run_op(&["make"], &[])), 2), Some(&parent), None, &params());
    let config_only = CacheRecord { layer: None, created_by: None, empty_layer: true, created: None, last_used: None };
    record(&index, &key, &config_only, Some(&identity), &inputs).unwrap();
    let changed = run_inputs(&["make", "install"], &[], &parent);
    assert!(explain_miss(&index, &identity, &changed).to_string().starts_with("instruction changed"));
    let other = StepIdentity { position: 1, ..identity.clone() };
    assert_eq!(explain_miss(&index, &other, &changed), Explanation::FirstBuild);
    assert_eq!(lookup(&index, &key).unwrap().unwrap().layer, None, "config-only records have no layer");
}
