//! Where a build's result goes (`-o/--output`), in docker's and buildx's forms.

use std::path::PathBuf;

use rbuild_store::Compression;

/// A file path or standard output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// The `docker save` archive (with an OCI layout inside), optionally gzipped whole.
    Docker { dest: Destination, gzip: bool },
    /// An OCI image layout archive only.
    Oci { dest: Destination, compression: Compression },
    /// A tar of the final root filesystem.
    RootfsTar { dest: Destination },
    /// The final root filesystem written into a directory.
    Local { dir: PathBuf },
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

fn is_gzip_name(path: &str) -> bool {
    path.ends_with(".tar.gz") || path.ends_with(".tgz") || path.ends_with(".gz")
}

/// Parses one `-o` value: `FILE.tar`, `FILE.tar.gz`, `-`, or
/// `type=docker|oci|tar|local,dest=PATH[,compression=gzip|zstd]`.
pub fn parse_output(text: &str) -> Result<OutputSpec, String> {
    if !text.contains('=') {
        if text.is_empty() {
            return Err("empty --output".into());
        }
        return Ok(OutputSpec::Docker { dest: destination(text), gzip: is_gzip_name(text) });
    }
    let mut kind = None;
    let mut dest = None;
    let mut compression = None;
    for field in text.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| format!("invalid --output field {field:?}: expected key=value"))?;
        match key.trim() {
            "type" => kind = Some(value.trim().to_string()),
            "dest" => dest = Some(value.trim().to_string()),
            "compression" => compression = Some(value.trim().to_string()),
            "name" | "oci-mediatypes" | "force-compression" | "compression-level" => {}
            other => return Err(format!("unknown --output attribute {other:?}")),
        }
    }
    let kind = kind.unwrap_or_else(|| "local".into());
    let dest = dest.ok_or_else(|| format!("--output type={kind} needs dest=PATH"))?;
    let compression = match compression.as_deref() {
        None | Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some(other) => return Err(format!("unsupported compression {other:?} (gzip or zstd)")),
    };
    match kind.as_str() {
        "docker" => {
            if compression == Compression::Zstd {
                return Err("type=docker archives use gzip layers (docker load cannot read zstd); use type=oci for zstd".into());
            }
            let gzip = is_gzip_name(&dest);
            Ok(OutputSpec::Docker { dest: destination(&dest), gzip })
        }
        "oci" => Ok(OutputSpec::Oci { dest: destination(&dest), compression }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms() {
        assert_eq!(
            parse_output("app.tar").unwrap(),
            OutputSpec::Docker { dest: Destination::File("app.tar".into()), gzip: false }
        );
        assert_eq!(
            parse_output("app.tar.gz").unwrap(),
            OutputSpec::Docker { dest: Destination::File("app.tar.gz".into()), gzip: true }
        );
        assert_eq!(parse_output("app.tgz").unwrap(), OutputSpec::Docker { dest: Destination::File("app.tgz".into()), gzip: true });
        assert_eq!(parse_output("-").unwrap(), OutputSpec::Docker { dest: Destination::Stdout, gzip: false });
    }

    #[test]
    fn long_forms() {
        assert_eq!(
            parse_output("type=oci,dest=x.tar,compression=zstd").unwrap(),
            OutputSpec::Oci { dest: Destination::File("x.tar".into()), compression: Compression::Zstd }
        );
        assert_eq!(parse_output("type=tar,dest=-").unwrap(), OutputSpec::RootfsTar { dest: Destination::Stdout });
        assert_eq!(parse_output("type=local,dest=out").unwrap(), OutputSpec::Local { dir: "out".into() });
        assert_eq!(
            parse_output("type=docker,dest=a.tar.gz").unwrap(),
            OutputSpec::Docker { dest: Destination::File("a.tar.gz".into()), gzip: true }
        );
    }

    #[test]
    fn bad_forms() {
        assert!(parse_output("type=registry,dest=x").is_err());
        assert!(parse_output("type=oci").is_err());
        assert!(parse_output("type=oci,dest=x,compression=lz4").is_err());
        assert!(parse_output("type=local,dest=-").is_err());
        assert!(parse_output("type=docker,dest=x,bogus=1").is_err());
    }
}
