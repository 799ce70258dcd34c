//! The harness shared by rbuild's end-to-end tests (`tests/tests/*.rs`).
//!
//! Every test builds a small real context with the `rbuild` binary, in a store of its own
//! (`RBUILD_ROOT`), and checks the result with independent clients: `docker load`/`run`/
//! `inspect` (Debian's Docker 20.10 client, or `$RBUILD_TEST_DOCKER`), `skopeo inspect`, and
//! `umoci unpack`. Nothing here skips: a missing daemon, tool or busybox is a test failure that
//! says how to get it (`scripts/test.sh` sets everything up).
//!
//! Run them with `scripts/test.sh -p rbuild-e2e` (add `-- NAME` to pick tests), or, with a
//! daemon running and the tools installed, `cargo build && cargo test -p rbuild-e2e`.
//! `RBUILD_BIN` points the tests at another rbuild binary; `RBUILD_TEST_DOCKER` at another
//! Docker client.
//!
//! - [`env`]: finding the binary, a [`TestEnv`] per test, the [`Rbuild`] command builder.
//! - [`context`]: writing build contexts ([`Context`]).
//! - [`debian`]: a Debian 12 minbase made once with debootstrap and cached, built into an
//!   image by rbuild, and a tiny `.deb` (alone or in a local `file:` repository) to install.
//! - [`docker`]: the Docker client and images loaded from archives ([`LoadedImage`]).
//! - [`archive`]: reading archives and layers, `skopeo` and `umoci`.
//! - [`image`]: rbuild's own image (`scripts/image.sh --shell`), loaded into Docker once per
//!   test process, for the tests that run rbuild in an ordinary container.
//! - [`foreign`]: Debian's arm64 busybox-static, fetched once and cached, for the platform
//!   tests' arm64 images (whose RUN steps run under QEMU through binfmt_misc).
//! - [`fault_proxy`]: a proxy before a registry that fails a blob upload with 500 and drops
//!   the next one half-way, for the push tests' retries.
//! - [`process`]: running commands with a timeout and checking their outcome ([`RunOutput`]).
//! - [`registry`]: a local `docker-registry` on 127.0.0.1 (anonymous, with basic auth, or with
//!   bearer tokens) for the pull tests, images pushed to it with skopeo, `DOCKER_CONFIG`
//!   credentials for it (passwords, identity tokens, a credential helper).
//! - [`sandbox`]: for RUN tests: a busybox base with a shell, layer lookups, leftover checks,
//!   builds run in the background to be interrupted.
//! - [`token_server`]: the token server of a bearer-auth registry: RS256 JWTs for basic-auth
//!   users (GET) and for identity tokens exchanged as OAuth2 refresh tokens (POST).
//! - [`store`]: for the store commands' tests: image ids of builds, parsing their tables,
//!   `rbuild save | docker load`, checking a store is sound.
//! - [`terminal`]: a tmux window for tests that need a terminal (tty progress, debug shells).
//! - [`users`]: the non-root users of the rootless tests, and running rbuild as one of them.

#[path = "harness/archive.rs"]
pub mod archive;
#[path = "harness/context.rs"]
pub mod context;
#[path = "harness/debian.rs"]
pub mod debian;
#[path = "harness/fault_proxy.rs"]
pub mod fault_proxy;
#[path = "harness/foreign.rs"]
pub mod foreign;
#[path = "harness/docker.rs"]
pub mod docker;
#[path = "harness/env.rs"]
pub mod env;
#[path = "harness/image.rs"]
pub mod image;
#[path = "harness/process.rs"]
pub mod process;
#[path = "harness/registry.rs"]
pub mod registry;
#[path = "harness/sandbox.rs"]
pub mod sandbox;
#[path = "harness/store.rs"]
pub mod store;
#[path = "harness/terminal.rs"]
pub mod terminal;
#[path = "harness/token_server.rs"]
pub mod token_server;
#[path = "harness/users.rs"]
pub mod users;

pub use archive::{Archive, EntryKind, LayerEntry};
pub use context::{Context, SCRATCH_BUSYBOX};
pub use docker::{Docker, LoadedImage};
pub use env::{rbuild_bin, Built, Rbuild, TestEnv};
pub use process::RunOutput;

/// The strings of a JSON array (panics on anything else), for comparing config lists.
pub fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a JSON array of strings, got {value}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("expected a string in {value}"))
                .to_string()
        })
        .collect()
}

/// The keys of a JSON object (panics on anything else), e.g. `ExposedPorts` or `Volumes`.
pub fn keys(value: &serde_json::Value) -> Vec<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {value}"))
        .keys()
        .cloned()
        .collect()
}
