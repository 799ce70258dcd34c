#!/usr/bin/env bash
# The project's one test command, for a fresh Debian 12 machine: `scripts/test.sh` as root, or
# `sudo scripts/test.sh` as another user.
# Installs what the end-to-end tests use (as root), starts a private Docker daemon when none
# answers (and stops it again on exit), then builds and tests the whole workspace.
# Extra arguments go to `cargo test`: `scripts/test.sh -- copy_` filters tests, and
# `scripts/test.sh -p rbuild-e2e` tests one package instead of the whole workspace.
set -euo pipefail
SCRIPT_NAME=test.sh
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# docker.io: load and run the built images; busybox-static: the binary test images are made of;
# skopeo, umoci: second opinions on the archives; jq: reading them by hand; bzip2, xz-utils, zstd:
# the archives of the ADD extraction tests; uidmap: newuidmap/newgidmap for the rootless tests;
# graphviz: `dot`, which reads what `rbuild graph` prints; docker-registry, apache2-utils
# (htpasswd): the local registries, anonymous and with basic auth, that the pull tests start;
# openssl: the key and certificate of the token server of the bearer-auth registry tests;
# debootstrap: the Debian minbase the debian_base tests build on (made once, cached in
# /var/cache/rbuild-tests); dpkg-dev (dpkg-scanpackages): their local apt repository; tmux: the
# terminal the progress tests watch the live (tty) view in; podman: a third client that must load
# the archives; openssh-client: the ssh-agent, ssh-add and ssh-keygen of the RUN --mount=type=ssh tests;
# python3-yaml: the executor tests parse examples/ci's templates; ca-certificates, binutils: what
# scripts/image.sh puts in (and strips for) rbuild's image, which the executor tests run.
# qemu-user-static, binfmt-support: the arm64 RUN steps of the platform tests (tests/tests/platforms.rs),
# whose binfmt_misc handler ensure_binfmt_aarch64 registers.
ensure_packages docker.io busybox-static skopeo umoci jq bzip2 xz-utils zstd uidmap graphviz \
  docker-registry apache2-utils openssl debootstrap dpkg-dev tmux podman openssh-client \
  python3-yaml ca-certificates binutils qemu-user-static binfmt-support
ensure_binfmt_aarch64
command -v cargo >/dev/null || die "cargo is not on PATH (install Rust with rustup first)"
start_dockerd_if_needed

# Packages chosen with -p/--package replace --workspace (cargo would test everything otherwise).
scope=(--workspace)
for arg in "$@"; do
  case "$arg" in
    --) break ;;
    -p | --package | -p?* | --package=*) scope=() ;;
  esac
done

# Unused dependencies fail the run: cargo-machete reads every crate's sources against its
# Cargo.toml (installed from crates.io the first time, into ~/.cargo/bin).
if ! command -v cargo-machete >/dev/null; then
  log "installing cargo-machete"
  cargo install --locked cargo-machete >&2 || die "cargo install cargo-machete failed"
fi
cargo machete || die "unused dependencies (above): remove them from Cargo.toml"

export RBUILD_TEST_DOCKER=$DOCKER
# The end-to-end tests run the rbuild binary, which `cargo test` alone does not build.
cargo build --workspace --locked
status=0
log=$(mktemp)
# --no-fail-fast: one run reports the failures of every test binary, not just the first.
set +e
cargo test "${scope[@]}" --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run: cargo's own last line is that of the last test binary
# (often a doc-test run with nothing in it). Tests that re-run their own binary as a child
# print a result line of their own too, so a few tests are counted twice.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
rm -f "$log"
exit "$status"
