//! Platforms (`os/arch[/variant]`) as image indexes and configs name them.
//! [`Platform`] is the build graph's: one definition, with containerd's
//! normalisation and matching, for the lowering and for the store's choice of
//! one manifest out of an index or a Docker manifest list.

pub use rbuild_frontend::graph::Platform;

/// A form of `platform` safe in a file name: `linux-arm64-v8`.
pub(crate) fn file_key(platform: &Platform) -> String {
    platform.to_string().replace('/', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_have_no_slashes() {
        assert_eq!(file_key(&Platform::parse("linux/arm/v6").unwrap()), "linux-arm-v6");
    }
}
