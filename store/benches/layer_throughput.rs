//! Layer-writing throughput probe (a `harness = false` bench target, not criterion).
//!
//! `bench/run.sh` builds it with `cargo bench --no-run` and times, on W5's data,
//! `layer_throughput DIR gzip|zstd|none STORE`: one `Store::write_layer` of DIR
//! (deterministic tar → sha256 → compression → blob file, fsynced and renamed)
//! into a store at STORE, against `tar -c | pigz`. Run by `cargo bench` with no
//! directory, it makes 64 MiB of random data and prints the MB/s of each
//! compression, so the probe also works on its own.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use rbuild_store::{Compression, LayerOptions, Store};

fn compression(name: &str) -> Compression {
    match name {
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        "none" => Compression::None,
        other => {
            eprintln!("unknown compression {other:?}: gzip, zstd or none");
            std::process::exit(2);
        }
    }
}

/// Writes the layer of `dir` into the store at `root`; prints what it took.
fn write(dir: &Path, name: &str, root: &Path) -> std::io::Result<()> {
    let store = Store::open(root).map_err(std::io::Error::other)?;
    let options = LayerOptions {
        source_date_epoch: None,
        compression: compression(name),
    };
    let start = Instant::now();
    let layer = store.write_layer(dir, &options).map_err(std::io::Error::other)?;
    let seconds = start.elapsed().as_secs_f64();
    let input = tree_bytes(dir)?;
    println!(
        "{name}: {:.1} MB of files in {seconds:.2} s = {:.0} MB/s, blob {:.1} MB ({})",
        input as f64 / 1e6,
        input as f64 / 1e6 / seconds,
        layer.size as f64 / 1e6,
        layer.digest.short()
    );
    Ok(())
}

fn tree_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { tree_bytes(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

/// Without arguments: 64 MiB of xorshift noise in a temp dir, every compression.
fn self_test() -> std::io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    std::fs::create_dir(&data)?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(data.join("big"))?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..(64 << 20) / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        file.write_all(&x.to_le_bytes())?;
    }
    file.flush()?;
    drop(file);
    for name in ["none", "gzip", "zstd"] {
        let store = tmp.path().join(format!("store-{name}"));
        write(&data, name, &store)?;
    }
    Ok(())
}

fn main() {
    // `cargo bench` passes `--bench` (and maybe a filter); only plain arguments count here.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let outcome = match args.as_slice() {
        [dir, name, root] => write(Path::new(dir), name, Path::new(root)),
        _ if args.iter().all(|a| !Path::new(a).is_dir()) => self_test(),
        _ => {
            eprintln!("usage: layer_throughput DIR gzip|zstd|none STORE_DIR");
            std::process::exit(2);
        }
    };
    if let Err(e) = outcome {
        eprintln!("layer_throughput: {e}");
        std::process::exit(1);
    }
}
