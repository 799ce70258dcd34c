//! sha256 throughput of every hashing path rbuild takes, beside the other
//! implementations in the dependency tree, on 8 MiB of random bytes.
//!
//! This CPU family has SHA extensions (SHA-NI): `sha2` 0.10 and 0.11 detect
//! them at run time (cpufeatures) and `ring` uses them too, so all paths
//! should run at the speed of the instructions (openssl's `speed sha256`: about
//! 1.8 GB/s on the benchmark VM), not at the portable code's (coreutils'
//! `sha256sum`: 276 MB/s). A path that falls to a few hundred MB/s here has
//! lost the hardware path. The figures are in the README's Performance
//! section.
//!
//! - `Digest::of_bytes`: manifests, configs, small records.
//! - `HashingWriter`: every layer tar (diff_id) and compressed blob written.
//! - `copy_hashed`: archive export and blob copies (hashed on a second thread).
//! - `sha2-0.10` / `sha2-0.11` (what oci-client verifies pulls with) / `ring`:
//!   the implementations themselves, for reference.

use std::hint::black_box;
use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rbuild_store::digest::{copy_hashed, HashingWriter};
use rbuild_store::Digest;

const LEN: usize = 8 << 20;

fn data() -> Vec<u8> {
    // xorshift: random enough that no path can shortcut it, without a dependency.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha256_paths(c: &mut Criterion) {
    let data = data();
    let mut group = c.benchmark_group("sha256");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.sample_size(20);
    group.bench_function("Digest::of_bytes", |b| b.iter(|| Digest::of_bytes(black_box(&data))));
    group.bench_function("HashingWriter", |b| {
        b.iter(|| {
            let mut w = HashingWriter::new(std::io::sink());
            for chunk in data.chunks(256 * 1024) {
                w.write_all(chunk).unwrap();
            }
            w.finish().0
        })
    });
    group.bench_function("copy_hashed", |b| {
        b.iter(|| copy_hashed(&data[..], LEN as u64, &mut std::io::sink()).unwrap())
    });
    group.bench_function("sha2-0.10", |b| {
        use sha2::Digest as _;
        b.iter(|| sha2::Sha256::digest(black_box(&data)))
    });
    group.bench_function("sha2-0.11", |b| {
        use sha2_011::Digest as _;
        b.iter(|| sha2_011::Sha256::digest(black_box(&data)))
    });
    group.bench_function("ring", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(&data)))
    });
    group.finish();
}

criterion_group!(benches, sha256_paths);
criterion_main!(benches);
