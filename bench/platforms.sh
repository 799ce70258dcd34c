#!/usr/bin/env bash
# W12, multi-platform: one `rbuild --platform linux/amd64,linux/arm64` build of a small
# multi-stage Dockerfile (a builder stage on $BUILDPLATFORM packs 2,000 source files, the final
# stage per target unpacks them in a RUN, emulated for arm64) against the two single-platform
# rbuild builds of it in sequence. Both cold (a fresh store each run), both writing one OCI
# archive per build (-o type=oci). BuildKit 0.8 of Docker 20.10 builds for several platforms
# only through buildx, which Debian 12 does not ship, so it has no row here.
#
# usage: bench/platforms.sh [RESULTS_DIR] (run.sh calls it with its results dir; the rows are
# W12 rbuild and W12 rbuild-2x, whose "rbuild ÷ this" is the one build's time over the two's)
# env: RBUILD (the binary; default target/release/rbuild, built when missing), RUNS (default 5),
#      WARMUP (default 1). Needs hyperfine, busybox-static, and QEMU for arm64: qemu-user-static
#      with its qemu-aarch64 binfmt_misc handler registered (scripts/test.sh registers it as root)
#      and the arm64 busybox the platform tests cache (/var/cache/rbuild-tests/busybox-static-arm64).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=$(dirname "$here")
res=${1:-$here/results/$(date -u +%Y%m%dT%H%M%SZ)-w12}
mkdir -p "$res"
runs=${RUNS:-5} warmup=${WARMUP:-1}
log() { echo "[w12] $*" >&2; }
die() { log "error: $*"; exit 1; }

arm64_busybox=${RBUILD_TEST_CACHE:-/var/cache/rbuild-tests}/busybox-static-arm64/busybox
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "no qemu-aarch64 binfmt_misc handler (run scripts/test.sh as root once)"
[ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static)"
[ -f "$arm64_busybox" ] || die "$arm64_busybox is missing (the platform tests fetch it: cargo test -p rbuild-e2e --test platforms, as root)"
command -v hyperfine >/dev/null || die "hyperfine is missing (apt-get install hyperfine)"
if [ -z "${RBUILD:-}" ]; then
  RBUILD=${CARGO_TARGET_DIR:-$project/target}/release/rbuild
  [ -x "$RBUILD" ] || (cd "$project" && cargo build --release --locked -p rbuild-builder >&2)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-w12.XXXXXX")
trap 'rm -rf "$work"' EXIT
ctx=$work/ctx
mkdir -p "$ctx/src"
cp /bin/busybox "$ctx/busybox-$(dpkg --print-architecture)"
cp "$arm64_busybox" "$ctx/busybox-arm64"
for d in $(seq -w 0 19); do
  mkdir -p "$ctx/src/d$d"
  for f in $(seq -w 0 99); do echo "file $d/$f $(printf '%064d' 0)" > "$ctx/src/d$d/f$f.txt"; done
done
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM --platform=$BUILDPLATFORM scratch AS build
ARG BUILDARCH
COPY busybox-$BUILDARCH /bin/busybox
COPY src /src
ARG TARGETARCH
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox tar -cf /out.tar /src && echo $TARGETARCH > /target"]
FROM scratch
ARG TARGETARCH
COPY busybox-$TARGETARCH /bin/busybox
COPY --from=build /out.tar /target /
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox tar -xf /out.tar -C / && /bin/busybox uname -m > /arch"]
DOCKERFILE

q() { printf '%q' "$1"; }
R=$(q "$RBUILD") C=$(q "$ctx") S=$(q "$work/store") O=$(q "$work/out")
build() { echo "RBUILD_ROOT=$S $R build --progress=plain --platform $1 -o type=oci,dest=$O-$2.tar $C >>$(q "$res/W12.log") 2>&1"; }
log "W12: $runs runs after $warmup warm-up, rbuild $("$RBUILD" --version 2>/dev/null | head -1)"
# Two cells, as run.sh's report reads them: W12-rbuild (one build) and W12-rbuild-2x (two).
cell() { # ID COMMAND
  hyperfine --shell=bash --style basic --runs "$runs" --warmup "$warmup" --prepare "rm -rf $S $O-*.tar" \
    --export-json "$res/$1.json" --export-markdown "$res/$1.md" -n "$1" \
    "/usr/bin/time -a -o $(q "$res/$1.rss") -f %M bash -c $(q "$2")" >&2
  cat "$res/$1.md"
}
cell W12-rbuild "$(build linux/amd64,linux/arm64 both)"
cell W12-rbuild-2x "$(build linux/amd64 amd64) && $(build linux/arm64 arm64)"
