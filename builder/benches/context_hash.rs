//! Build-context hashing on a generated tree of 20,000 files of 1–4 KiB in
//! 200 folders (like W2's small files, about 50 MB), with a `.dockerignore`.
//!
//! - `cache_digest_cold`: the step cache's `digest_whole_context` (what a
//!   `COPY . /` key needs) with an empty in-memory stat cache: walk, select,
//!   sha256 of every file.
//! - `cache_digest_warm`: the same with the stat cache filled by a first run:
//!   what a no-op rebuild pays (W3).
//! - `reference_walk_sha256_parallel`: a plain walk filtered through
//!   `BuildContext::is_excluded` and a parallel sha256 of every file (one
//!   thread per CPU) folded into one digest: the yardstick for the cold case.
//! - `reference_stat_walk`: that walk with metadata alone: the floor for the
//!   warm case.
//!
//! `cargo bench -p rbuild-builder --bench context_hash`.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use rbuild_builder::engine::cache::digest_whole_context;
use rbuild_builder::engine::context::BuildContext;
use rbuild_store::StatCache;
use sha2::{Digest, Sha256};

const FILES: usize = 20_000;

/// Writes the tree; returns the bytes of file content.
fn make_tree(root: &Path) -> io::Result<u64> {
    let mut x: u64 = 0x853c_49e6_748f_ea9b;
    let mut total = 0;
    for i in 0..FILES {
        let dir = root.join(format!("d{:02}/s{}", i / 1000, i / 100 % 10));
        if i % 100 == 0 {
            fs::create_dir_all(&dir)?;
        }
        let len = 1024 + (i * 7919) % 3073;
        let mut buf = Vec::with_capacity(len + 8);
        while buf.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.extend_from_slice(&x.to_le_bytes());
        }
        buf.truncate(len);
        fs::write(dir.join(format!("f{i:05}.bin")), &buf)?;
        total += len as u64;
    }
    fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY . /ctx\n")?;
    fs::write(root.join(".dockerignore"), "**/*.tmp\n!keep.tmp\nbuild/\n**/cache\n")?;
    Ok(total)
}

struct Item {
    rel: String,
    path: PathBuf,
    mode: u32,
    size: u64,
    mtime: i64,
}

/// Every file and directory not excluded, in path order.
fn walk(ctx: &BuildContext) -> io::Result<Vec<Item>> {
    fn visit(ctx: &BuildContext, dir: &Path, prefix: &str, out: &mut Vec<Item>) -> io::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            if ctx.is_excluded(&rel) {
                continue;
            }
            let meta = entry.metadata()?;
            let path = entry.path();
            out.push(Item {
                rel: rel.clone(),
                path: path.clone(),
                mode: meta.mode(),
                size: meta.len(),
                mtime: meta.mtime(),
            });
            if meta.is_dir() {
                visit(ctx, &path, &rel, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    visit(ctx, ctx.root(), "", &mut out)?;
    Ok(out)
}

/// sha256 of every regular file on all CPUs, folded in path order.
fn context_digest(ctx: &BuildContext) -> io::Result<[u8; 32]> {
    let items = walk(ctx)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let mut digests = vec![[0u8; 32]; items.len()];
    let chunks: Vec<Vec<(usize, [u8; 32])>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> io::Result<Vec<(usize, [u8; 32])>> {
                    let mut done = Vec::new();
                    let mut buf = vec![0; 64 * 1024];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { return Ok(done) };
                        if item.mode & 0o170000 != 0o100000 {
                            continue;
                        }
                        let mut hasher = Sha256::new();
                        let mut file = fs::File::open(&item.path)?;
                        loop {
                            let n = file.read(&mut buf)?;
                            if n == 0 {
                                break;
                            }
                            hasher.update(&buf[..n]);
                        }
                        done.push((i, hasher.finalize().into()));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect::<io::Result<_>>()
    })?;
    for (i, d) in chunks.into_iter().flatten() {
        digests[i] = d;
    }
    let mut all = Sha256::new();
    for (item, digest) in items.iter().zip(&digests) {
        all.update(item.rel.as_bytes());
        all.update([0]);
        all.update(item.mode.to_le_bytes());
        all.update(item.size.to_le_bytes());
        all.update(digest);
    }
    Ok(all.finalize().into())
}

/// The walk with metadata alone, folded: what a stat cache still has to do.
fn stat_walk(ctx: &BuildContext) -> io::Result<[u8; 32]> {
    let mut all = Sha256::new();
    for item in walk(ctx)? {
        all.update(item.rel.as_bytes());
        all.update(item.size.to_le_bytes());
        all.update(item.mtime.to_le_bytes());
    }
    Ok(all.finalize().into())
}

fn context_hash(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = make_tree(tmp.path()).unwrap();
    let ctx = BuildContext::open(tmp.path(), None).unwrap();

    let mut group = c.benchmark_group("context_20k_files");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(bytes));
    group.bench_function("cache_digest_cold", |b| {
        b.iter(|| digest_whole_context(&ctx, &mut StatCache::in_memory()).unwrap())
    });
    let mut warm = StatCache::in_memory();
    digest_whole_context(&ctx, &mut warm).unwrap();
    group.bench_function("cache_digest_warm", |b| {
        b.iter(|| digest_whole_context(&ctx, &mut warm).unwrap())
    });
    group.bench_function("reference_walk_sha256_parallel", |b| b.iter(|| context_digest(&ctx).unwrap()));
    group.bench_function("reference_stat_walk", |b| b.iter(|| stat_walk(&ctx).unwrap()));
    group.finish();
}

criterion_group!(benches, context_hash);
criterion_main!(benches);
