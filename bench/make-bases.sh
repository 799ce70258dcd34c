#!/usr/bin/env bash
# Make the base images of the benchmark with rbuild itself: no daemon, no registry, no network.
#
#   WORK/bases/busybox.tar   rbuild-bench/busybox:1: a static busybox (every applet as a symlink),
#                            /etc/passwd and /etc/group (root, nobody), /root, /tmp (1777). One
#                            layer, FROM scratch + COPY, written by `rbuild -o type=docker`: a
#                            docker-archive that is also an OCI layout. Docker loads it; buildah
#                            pulls it as docker-archive:.
#   WORK/bases/rbuild-root/  the rbuild store that built it. A cold rbuild run starts from a copy
#                            of it, so rbuild's FROM finds the base without a registry.
#   WORK/bases/pull.oci.tar  rbuild-bench/pull:1 for W7: the busybox tree plus PULL_MIB MiB of
#                            hex text (gzip -6 leaves 57% of it; rbuild's gzip -1, 87%) and
#                            /etc/bench-pull, one layer, as an OCI archive. No builder has its layer.
#
# usage: make-bases.sh RBUILD WORK [PULL_MIB]     (PULL_MIB default 96)
# env:   BUSYBOX (a statically linked busybox; default: busybox on PATH)
set -euo pipefail
[ $# -ge 2 ] && [ $# -le 3 ] || { sed -n 2,16p "$0" >&2; exit 2; }
rbuild=$1 work=$2 pull_mib=${3:-96}
here=$(cd "$(dirname "$0")" && pwd)
busybox=${BUSYBOX:-$(command -v busybox || true)}
[ -x "$busybox" ] || { echo "no busybox: apt-get install busybox-static" >&2; exit 1; }
if LC_ALL=C ldd "$busybox" >/dev/null 2>&1; then  # ldd fails on a static binary
  echo "$busybox is linked dynamically: apt-get install busybox-static" >&2; exit 1
fi
bases=$work/bases
rm -rf "$bases" && mkdir -p "$bases"
export SOURCE_DATE_EPOCH=0

# rootfs DIR: the busybox tree.
rootfs() {
  mkdir -p "$1"/{bin,etc,root,tmp}
  chmod 755 "$1" "$1/bin" "$1/etc"; chmod 700 "$1/root"; chmod 1777 "$1/tmp"
  cp "$busybox" "$1/bin/busybox" && chmod 755 "$1/bin/busybox"
  local a
  for a in $("$busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$1/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$1/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$1/etc/group"
}

# image ROOT_DIR TAG STORE TYPE FILE: FROM scratch + COPY of the tree, built by rbuild into STORE.
image() {
  local ctx=$bases/ctx-${2//[:\/]/-}
  mkdir -p "$ctx" && mv "$1" "$ctx/rootfs"
  printf '%s\n' 'FROM scratch' 'COPY rootfs/ /' \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' 'CMD ["sh"]' > "$ctx/Dockerfile"
  RBUILD_ROOT=$3 "$rbuild" build --progress quiet -q --network none -t "$2" -o "type=$4,dest=$5" "$ctx" >/dev/null
  rm -rf "$ctx"
  echo "$2 -> $5 ($(du -h "$5" | cut -f1))"
}

rootfs "$bases/tree"
image "$bases/tree" rbuild-bench/busybox:1 "$bases/rbuild-root" docker "$bases/busybox.tar"

rootfs "$bases/tree"
python3 "$here/gen.py" payload "$bases/tree/opt/payload" "$pull_mib"
echo "rbuild bench W7 pull image" > "$bases/tree/etc/bench-pull"
image "$bases/tree" rbuild-bench/pull:1 "$bases/pull-root" oci "$bases/pull.oci.tar"
rm -rf "$bases/pull-root"
