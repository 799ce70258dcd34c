//! Where a build's result goes (`-o/--output`), in docker's and buildx's forms.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rbuild_store::compress::BackgroundEncoder;
use rbuild_store::writeback::EarlyWriteback;
use rbuild_store::{Codec, Compression, Reference};

/// A file path or standard output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// The `docker save` archive (with an OCI layout inside), optionally gzipped whole;
    /// `names` (`name=`) name the image in it besides the build's tags; its layers
    /// compressed with `compression` (gzip or uncompressed: Docker 20.10 reads no zstd).
    Docker { dest: Destination, gzip: bool, names: Vec<Reference>, compression: Codec },
    /// An OCI image layout archive only, its layers compressed with `compression`.
    Oci { dest: Destination, compression: Codec, names: Vec<Reference> },
    /// A tar of the final root filesystem.
    RootfsTar { dest: Destination },
    /// The final root filesystem written into a directory.
    Local { dir: PathBuf },
    /// Pushed to a registry as each of `names` (the build's tags when empty), its layers
    /// compressed with `compression` (at its level): `type=registry`, `type=image,push=true`,
    /// `--push`.
    Registry { names: Vec<Reference>, compression: Codec },
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Stdout => f.write_str("stdout"),
            Destination::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl OutputSpec {
    pub fn writes_stdout(&self) -> bool {
        matches!(
            self,
            OutputSpec::Docker { dest: Destination::Stdout, .. }
                | OutputSpec::Oci { dest: Destination::Stdout, .. }
                | OutputSpec::RootfsTar { dest: Destination::Stdout }
        )
    }
}

fn destination(text: &str) -> Destination {
    if text == "-" {
        Destination::Stdout
    } else {
        Destination::File(PathBuf::from(text))
    }
}

/// Whether a file name asks for the whole archive gzipped (`.tar.gz`, `.tgz`, `.gz`).
pub fn is_gzip_name(path: &str) -> bool {
    path.ends_with(".tar.gz") || path.ends_with(".tgz") || path.ends_with(".gz")
}

/// Writes an archive, gzipped whole when `gzip`, to `stdout` or to a file. A file is
/// written as a temp file beside it and renamed into place, so a failure never leaves half
/// an archive under the asked name. Every archive rbuild writes (a build's `-o`, `rbuild
/// save`) goes through here; gzip runs in parallel on every CPU. Errors are the writer's
/// own; the caller says what was being written.
pub fn write_output<E: From<io::Error>>(
    dest: &Destination,
    gzip: bool,
    stdout: &mut dyn Write,
    write: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<(), E> {
    match dest {
        Destination::Stdout if gzip => {
            // Standard output is only borrowed here, and the parallel encoder must own its
            // writer: gzip runs on this thread.
            let mut encoder = rbuild_store::compress::Encoder::new(Compression::Gzip, BufWriter::new(&mut *stdout))?;
            write(&mut encoder)?;
            encoder.finish()?.flush()?;
            Ok(())
        }
        Destination::Stdout => {
            let mut out = BufWriter::new(stdout);
            write(&mut out)?;
            out.flush()?;
            Ok(())
        }
        Destination::File(path) => write_file(path, gzip, write),
    }
}

fn write_file<E: From<io::Error>>(
    path: &Path,
    gzip: bool,
    write: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<(), E> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("creating a temporary file in {}: {e}", dir.display())))?;
    let file = temp.as_file().try_clone()?;
    let out = BufWriter::new(EarlyWriteback::new(file));
    let out = if gzip {
        let mut encoder = BackgroundEncoder::spawn(Compression::Gzip, out)?;
        write(&mut encoder)?;
        encoder.finish()?
    } else {
        let mut out = out;
        write(&mut out)?;
        out
    };
    out.into_inner().map_err(|e| e.into_error())?;
    // A temp file is created 0600; an archive is an ordinary file.
    temp.as_file().set_permissions(fs::Permissions::from_mode(0o644))?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Parses one `-o` value: `FILE.tar`, `FILE.tar.gz`, `-`, or
/// `type=docker|oci|tar|local,dest=PATH[,compression=gzip|zstd|uncompressed][,compression-level=N]`.
pub fn parse_output(text: &str) -> Result<OutputSpec, String> {
    if !text.contains('=') {
        if text.is_empty() {
            return Err("empty --output".into());
        }
        return Ok(OutputSpec::Docker {
            dest: destination(text),
            gzip: is_gzip_name(text),
            names: Vec::new(),
            compression: Codec::default(),
        });
    }
    let mut kind = None;
    let mut dest = None;
    let mut compression = None;
    let mut names = Vec::new();
    let mut oci_mediatypes = None;
    let mut push = false;
    let mut level = None;
    for field in text.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| format!("invalid --output field {field:?}: expected key=value"))?;
        let value = value.trim();
        match key.trim() {
            "type" => kind = Some(value.to_string()),
            "dest" => dest = Some(value.to_string()),
            "compression" => compression = Some(value.to_string()),
            "name" => names.push(Reference::parse(value).map_err(|e| format!("invalid name={value:?}: {e}"))?),
            "oci-mediatypes" => oci_mediatypes = Some(boolean("oci-mediatypes", value)?),
            // rbuild writes every layer in the compression asked for, converting what
            // is stored otherwise: what force-compression=true asks BuildKit to do.
            "force-compression" => {
                if !boolean("force-compression", value)? {
                    return Err("force-compression=false is not supported: rbuild always writes every layer in the requested compression".into());
                }
            }
            "push" => push = boolean("push", value)?,
            "compression-level" => level = Some(value.to_string()),
            other => return Err(format!("unknown --output attribute {other:?}")),
        }
    }
    let kind = kind.unwrap_or_else(|| "local".into());
    if matches!(kind.as_str(), "tar" | "local") && (compression.is_some() || level.is_some()) {
        return Err(format!("compression= and compression-level= apply to image outputs (type=docker, oci, registry or image), not type={kind}"));
    }
    let codec = layer_codec(compression.as_deref(), level.as_deref())?;
    if matches!(kind.as_str(), "registry" | "image") {
        return registry_output(&kind, push, dest, codec, names, oci_mediatypes);
    }
    if push {
        return Err(format!("push=true applies to type=image, not type={kind}"));
    }
    match (kind.as_str(), oci_mediatypes) {
        ("docker", Some(true)) => {
            return Err("type=docker archives use Docker's media types, which every docker load reads; use type=oci for OCI media types".into())
        }
        ("oci", Some(false)) => return Err("type=oci archives use OCI media types; use type=docker for Docker's".into()),
        ("tar" | "local", Some(_)) => return Err(format!("oci-mediatypes= applies to image outputs, not type={kind}")),
        _ => {}
    }
    if !names.is_empty() && matches!(kind.as_str(), "tar" | "local") {
        return Err(format!("name= applies to image outputs (type=docker or type=oci), not type={kind}"));
    }
    let dest = dest.ok_or_else(|| format!("--output type={kind} needs dest=PATH"))?;
    match kind.as_str() {
        "docker" => {
            if codec.compression == Compression::Zstd {
                return Err("compression=zstd is not supported for type=docker: docker load before Docker 23.0 (Debian's 20.10 included) cannot read zstd layers; use compression=gzip or uncompressed, or type=oci for zstd".into());
            }
            let gzip = is_gzip_name(&dest);
            Ok(OutputSpec::Docker { dest: destination(&dest), gzip, names, compression: codec })
        }
        "oci" => Ok(OutputSpec::Oci { dest: destination(&dest), compression: codec, names }),
        "tar" => Ok(OutputSpec::RootfsTar { dest: destination(&dest) }),
        "local" => {
            if dest == "-" {
                return Err("type=local needs a directory as dest".into());
            }
            Ok(OutputSpec::Local { dir: PathBuf::from(dest) })
        }
        other => Err(format!("unknown --output type {other:?} (docker, oci, tar or local)")),
    }
}

/// `type=registry` or `type=image` (which pushes only with `push=true`: the build's image
/// is always stored, `-t` names it).
fn registry_output(
    kind: &str,
    push: bool,
    dest: Option<String>,
    compression: Codec,
    names: Vec<Reference>,
    oci_mediatypes: Option<bool>,
) -> Result<OutputSpec, String> {
    if kind == "image" && !push {
        return Err("type=image without push=true: rbuild stores every image it builds; name it with -t, or add push=true to push it".into());
    }
    if dest.is_some() {
        return Err(format!("type={kind} pushes to the registry its name= names; it takes no dest="));
    }
    if oci_mediatypes == Some(false) {
        return Err("pushed images use OCI media types; oci-mediatypes=false is not supported".into());
    }
    if let Some(name) = names.iter().find(|n| n.digest().is_some()) {
        return Err(format!("name={} names a digest; a push names a tag (the registry computes the digest)", name.familiar()));
    }
    if compression.compression == Compression::None {
        return Err(format!("compression=uncompressed applies to archives (type=oci, type=docker), not type={kind}: a push sends gzip or zstd layers"));
    }
    Ok(OutputSpec::Registry { names, compression })
}

/// The layer codec of `compression=` and `compression-level=`, the one reading of them for
/// every output and cache export: gzip by default, each algorithm's level range checked
/// ([`Codec::new`]). `uncompressed` is a codec too; the outputs that cannot send plain
/// layers refuse it themselves.
pub fn layer_codec(compression: Option<&str>, level: Option<&str>) -> Result<Codec, String> {
    let algorithm = match compression {
        None | Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some("uncompressed") => Compression::None,
        Some(other) => return Err(format!("unsupported compression {other:?} (gzip, zstd or uncompressed)")),
    };
    let level = level
        .map(|value| value.parse::<u32>().map_err(|_| format!("compression-level={value:?}: expected a number")))
        .transpose()?;
    Codec::new(algorithm, level)
}

/// `true`/`false` of an `--output` attribute.
fn boolean(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{key}={other:?}: expected true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms() {
        assert_eq!(
            parse_output("app.tar").unwrap(),
            OutputSpec::Docker { dest: Destination::File("app.tar".into()), gzip: false, names: vec![], compression: Codec::default() }
        );
        assert_eq!(
            parse_output("app.tar.gz").unwrap(),
            OutputSpec::Docker { dest: Destination::File("app.tar.gz".into()), gzip: true, names: vec![], compression: Codec::default() }
        );
        assert_eq!(parse_output("app.tgz").unwrap(), OutputSpec::Docker { dest: Destination::File("app.tgz".into()), gzip: true, names: vec![], compression: Codec::default() });
        assert_eq!(parse_output("-").unwrap(), OutputSpec::Docker { dest: Destination::Stdout, gzip: false, names: vec![], compression: Codec::default() });
    }

    #[test]
    fn long_forms() {
        assert_eq!(
            parse_output("type=oci,dest=x.tar,compression=zstd").unwrap(),
            OutputSpec::Oci { dest: Destination::File("x.tar".into()), compression: Compression::Zstd.into(), names: vec![] }
        );
        assert_eq!(parse_output("type=tar,dest=-").unwrap(), OutputSpec::RootfsTar { dest: Destination::Stdout });
        assert_eq!(parse_output("type=local,dest=out").unwrap(), OutputSpec::Local { dir: "out".into() });
        assert_eq!(
            parse_output("type=docker,dest=a.tar.gz").unwrap(),
            OutputSpec::Docker { dest: Destination::File("a.tar.gz".into()), gzip: true, names: vec![], compression: Codec::default() }
        );
    }

    #[test]
    fn push_forms() {
        let names = vec![Reference::parse("r.example/a:1").unwrap(), Reference::parse("r.example/b:2").unwrap()];
        assert_eq!(
            parse_output("type=registry,name=r.example/a:1,name=r.example/b:2").unwrap(),
            OutputSpec::Registry { names: names.clone(), compression: Compression::Gzip.into() }
        );
        assert_eq!(
            parse_output("type=image,name=r.example/a:1,name=r.example/b:2,push=true,compression=zstd").unwrap(),
            OutputSpec::Registry { names: names.clone(), compression: Compression::Zstd.into() }
        );
        assert_eq!(parse_output("type=registry").unwrap(), OutputSpec::Registry { names: vec![], compression: Compression::Gzip.into() });
        assert_eq!(
            parse_output("type=registry,name=r.example/a:1,name=r.example/b:2,compression=zstd,compression-level=12").unwrap(),
            OutputSpec::Registry { names, compression: Codec::new(Compression::Zstd, Some(12)).unwrap() }
        );
    }

    #[test]
    fn bad_forms() {
        assert!(parse_output("type=registry,dest=x").is_err());
        assert!(parse_output("type=image,name=r/app:1").is_err());
        assert!(parse_output("type=registry,name=r/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").is_err());
        assert!(parse_output("type=docker,dest=x,push=true").is_err());
        assert!(parse_output("type=oci").is_err());
        assert!(parse_output("type=oci,dest=x,compression=lz4").is_err());
        assert!(parse_output("type=local,dest=-").is_err());
        assert!(parse_output("type=docker,dest=x,bogus=1").is_err());
        assert!(parse_output("type=registry,compression-level=10").is_err());
        assert!(parse_output("type=registry,compression=zstd,compression-level=20").is_err());
        assert!(parse_output("type=registry,compression-level=best").is_err());
    }

    #[test]
    fn archives_take_the_push_forms_compression() {
        let oci = parse_output("type=oci,dest=x.tar,compression=zstd,compression-level=3").unwrap();
        assert_eq!(oci, OutputSpec::Oci { dest: Destination::File("x.tar".into()), compression: Compression::Zstd.into(), names: vec![] });
        let OutputSpec::Oci { compression, .. } = parse_output("type=oci,dest=x.tar,compression=zstd,compression-level=12").unwrap() else { panic!() };
        assert_eq!(compression, Codec::new(Compression::Zstd, Some(12)).unwrap());
        assert_eq!(compression.explicit_level(), Some(12));
        let OutputSpec::Oci { compression, .. } = parse_output("type=oci,dest=x.tar,compression=uncompressed").unwrap() else { panic!() };
        assert_eq!(compression, Compression::None.into());
        let docker = parse_output("type=docker,dest=a.tar,compression=uncompressed").unwrap();
        let OutputSpec::Docker { compression, gzip: false, .. } = docker else { panic!("{docker:?}") };
        assert_eq!(compression, Compression::None.into());
        let OutputSpec::Docker { compression, .. } = parse_output("type=docker,dest=a.tar,compression-level=9").unwrap() else { panic!() };
        assert_eq!(compression, Codec::new(Compression::Gzip, Some(9)).unwrap());
        // The one parser serves pushes and archives alike: the same text, the same codec.
        let OutputSpec::Registry { compression: pushed, .. } = parse_output("type=registry,compression=zstd,compression-level=7").unwrap() else { panic!() };
        let OutputSpec::Oci { compression: archived, .. } = parse_output("type=oci,dest=x,compression=zstd,compression-level=7").unwrap() else { panic!() };
        assert_eq!(pushed, archived);
        assert_eq!(layer_codec(Some("zstd"), Some("7")), Ok(pushed));
    }

    #[test]
    fn compression_settings_are_refused_clearly() {
        for (value, expected) in [
            ("type=docker,dest=a.tar,compression=zstd", "docker load before Docker 23.0"),
            ("type=oci,dest=a.tar,compression=gzip,compression-level=10", "out of range for gzip (0–9)"),
            ("type=docker,dest=a.tar,compression-level=10", "out of range for gzip (0–9)"),
            ("type=oci,dest=a.tar,compression=zstd,compression-level=0", "out of range for zstd (1–19)"),
            ("type=oci,dest=a.tar,compression=zstd,compression-level=22", "out of range for zstd (1–19)"),
            ("type=oci,dest=a.tar,compression=uncompressed,compression-level=1", "no compression level"),
            ("type=oci,dest=a.tar,compression-level=fast", "expected a number"),
            ("type=oci,dest=a.tar,compression=lz4", "gzip, zstd or uncompressed"),
            ("type=registry,name=r/app:1,compression=uncompressed", "applies to archives"),
            ("type=tar,dest=a.tar,compression=gzip", "apply to image outputs"),
            ("type=local,dest=d,compression-level=3", "apply to image outputs"),
        ] {
            let err = parse_output(value).unwrap_err();
            assert!(err.contains(expected), "{value}: {err}");
        }
    }

    #[test]
    fn buildkit_attributes_work_or_are_refused_clearly() {
        let named = parse_output("type=docker,dest=a.tar,name=app:1,name=registry.example.com/app:1").unwrap();
        let OutputSpec::Docker { names, .. } = named else { panic!("{named:?}") };
        assert_eq!(names, [Reference::parse("app:1").unwrap(), Reference::parse("registry.example.com/app:1").unwrap()]);
        assert!(parse_output("type=oci,dest=a.tar,oci-mediatypes=true,force-compression=true").is_ok());
        assert!(parse_output("type=docker,dest=a.tar,oci-mediatypes=false").is_ok());
        for (value, expected) in [
            ("type=docker,dest=a.tar,oci-mediatypes=true", "use type=oci"),
            ("type=oci,dest=a.tar,oci-mediatypes=false", "use type=docker"),
            ("type=oci,dest=a.tar,oci-mediatypes=maybe", "expected true or false"),
            ("type=oci,dest=a.tar,force-compression=false", "force-compression=false is not supported"),
            ("type=local,dest=d,name=app:1", "name= applies to image outputs"),
            ("type=docker,dest=a.tar,name=UPPER:1", "invalid name="),
        ] {
            let err = parse_output(value).unwrap_err();
            assert!(err.contains(expected), "{value}: {err}");
        }
    }
}
