//! Layer tar + compression: `write_layer_tar` alone (into a sink) and the
//! store's whole `write_layer` (tar → sha256 → compression → fsynced blob) for
//! each compression, on a tree like a small real layer: 2,000 files of
//! 1–4 KiB plus one 24 MiB file, all random (the worst case for deflate).
//! `cargo bench -p rbuild-store --bench layer`.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use rbuild_store::{write_layer_tar, Compression, LayerOptions, Store};

struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Makes the tree; returns its size in bytes.
fn make_tree(root: &Path) -> io::Result<u64> {
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    let mut total = 0;
    for i in 0..2000u64 {
        let dir = root.join(format!("d{:02}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        let mut buf = vec![0; 1024 + (i as usize * 1543) % 3073];
        noise.fill(&mut buf);
        std::fs::write(dir.join(format!("f{i:04}")), &buf)?;
        total += buf.len() as u64;
    }
    let mut big = io::BufWriter::new(std::fs::File::create(root.join("big"))?);
    let mut buf = vec![0; 1 << 20];
    for _ in 0..24 {
        noise.fill(&mut buf);
        big.write_all(&buf)?;
        total += buf.len() as u64;
    }
    big.flush()?;
    Ok(total)
}

fn layer(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let bytes = make_tree(&tree).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();

    let mut group = c.benchmark_group("layer");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(bytes));
    group.bench_function("tar_to_sink", |b| {
        b.iter(|| write_layer_tar(&tree, None, io::sink()).unwrap())
    });
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let options = LayerOptions {
            source_date_epoch: None,
            compression,
        };
        group.bench_function(format!("write_layer_{}", compression.name()), |b| {
            b.iter(|| store.write_layer(&tree, &options).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, layer);
criterion_main!(benches);
