#!/usr/bin/env bash
# Builds rbuild's own container image with rbuild (no Docker): a static rbuild on `scratch`,
# with CA certificates, an /etc/passwd naming root and an unprivileged user `rbuild` (1000),
# and the `executor` link at /usr/bin/executor and /kaniko/executor, so that pipelines written
# for kaniko's image keep their entrypoint. The image is tagged rbuild:dev in rbuild's store
# and, with -o FILE, written as a docker archive (`docker load -i FILE`).
#
#   scripts/image.sh [-o FILE] [-t NAME] [--shell]
#
# --shell adds a static busybox at /busybox (on PATH), as kaniko's `:debug` image has, for CI
# systems that run a script in the image (GitLab CI); it is then tagged rbuild:debug.
#
# Reproducible: file and image times come from SOURCE_DATE_EPOCH (default: the last commit's
# time), so two runs from the same checkout give the same image digest.
#
# The binary is linked statically against glibc (`-C target-feature=+crt-static`), which
# needs nothing installed beyond the Rust toolchain; a musl target is used instead when
# rustup has it installed (x86_64-unknown-linux-musl). The image has no newuidmap/newgidmap:
# a non-root user in it maps only root in its user namespace (see README, "rbuild's image").
set -euo pipefail
SCRIPT_NAME=image
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

out=
name=
shell=false
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=${2:?-o needs a file}; shift 2 ;;
    -t) name=${2:?-t needs a name}; shift 2 ;;
    --shell) shell=true; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (usage: scripts/image.sh [-o FILE] [-t NAME] [--shell])" ;;
  esac
done
if [ -z "$name" ]; then
  if $shell; then name=rbuild:debug; else name=rbuild:dev; fi
fi

ensure_packages ca-certificates binutils
$shell && ensure_packages busybox-static

arch=$(uname -m)
if rustup target list --installed 2>/dev/null | grep -qx "$arch-unknown-linux-musl"; then
  target=$arch-unknown-linux-musl
  rustflags=${RUSTFLAGS:-}
else
  target=$arch-unknown-linux-gnu
  rustflags="${RUSTFLAGS:-} -C target-feature=+crt-static"
fi
log "building a static rbuild for $target"
(cd "$repo" && RUSTFLAGS="$rustflags" cargo build --release --locked -p rbuild-builder --target "$target" >&2)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
binary=$target_dir/$target/release/rbuild
if ldd "$binary" >/dev/null 2>&1 && ! ldd "$binary" 2>&1 | grep -q 'statically linked'; then
  die "$binary is not static: $(ldd "$binary" 2>&1 | head -3)"
fi

epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
root=$context/rootfs
mkdir -p "$root/usr/bin" "$root/kaniko/.docker" "$root/etc/ssl/certs" "$root/workspace" "$root/tmp" "$context/home/rbuild"
strip -o "$root/usr/bin/rbuild" "$binary"
ln -s rbuild "$root/usr/bin/executor"
ln -s /usr/bin/rbuild "$root/kaniko/executor"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nrbuild:x:1000:1000:rbuild:/home/rbuild:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nrbuild:x:1000:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
path=/usr/bin:/kaniko
if $shell; then
  mkdir -p "$root/busybox"
  cp /bin/busybox "$root/busybox/busybox"
  for tool in sh ls cat cp mkdir echo printf base64 tr env sed grep; do ln -s busybox "$root/busybox/$tool"; done
  path=$path:/busybox
fi
chmod 0755 "$root/usr/bin/rbuild"
cat >"$context/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
COPY --chown=1000:1000 home/ /home/
# kaniko's image reads registry credentials from /kaniko/.docker/config.json.
ENV PATH=$path \
    DOCKER_CONFIG=/kaniko/.docker \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /workspace
ENTRYPOINT ["/kaniko/executor"]
DOCKERFILE

rbuild=$binary
args=(build -t "$name" --build-arg "SOURCE_DATE_EPOCH=$epoch" --progress plain)
[ -n "$out" ] && args+=(-o "type=docker,dest=$out")
log "building $name with $rbuild"
"$rbuild" "${args[@]}" "$context" >&2
log "done: $name${out:+, written to $out}"
