#!/usr/bin/env bash
# buildah, daemonless: `buildah bud --layers` (every step cached, as rbuild and BuildKit do), in
# a store of its own under $DATA ($STATE, or with --disk fresh a fresh filesystem; ../run.sh).
# BUILDAH_DRIVER (overlay, else vfs) and BUILDAH_ISOLATION (oci, else chroot) are what `setup` found to work here; BUILDAH_JOBS (default 1, buildah's
# own default: stages one by one; 0 = all at once).
#   cold:   working containers, TAG and every unused image removed; the base stays
#   export: build, then `buildah push TAG docker-archive:$OUT`
#   pull:   `buildah pull` over plain HTTP from the local registry
#   push:   `buildah push` of TAG to $PUSH_REF over plain HTTP
#   stash:  after a build, the cache mounts (RUN --mount=type=cache) put aside for a new runner:
#           buildah keeps them outside its storage, in $TMPDIR/buildah-cache-UID (default
#           /var/tmp), which this script points at $DATA/tmp for context w8 (and only there, so
#           the other workloads' temporary files stay where buildah puts them); a tar of it
#   runner: cold (which removes the cache mounts too), the stash kept
#   carried: the cold runner's build with the stash: `tar -x` into $DATA/tmp + build (buildah
#           has no cache-mount import of its own)
# setup pulls each ARCHIVE=TAG of BASE_IMAGES (default the busybox base) from $BASES.
#   release: nothing of it left mounted in $DATA (before run.sh replaces that filesystem)
# usage: buildah.sh setup|version|build|export|cold|untag|pull|unpull|push|stash|runner|carried|release|cleanup
set -euo pipefail
conf=$STATE/buildah.env
# shellcheck source=/dev/null
[ ! -f "$conf" ] || . "$conf"
DATA=${DATA:-$STATE}
case ${CTX:-} in */w8) export TMPDIR=$DATA/tmp; mkdir -p "$TMPDIR" ;; esac
bh() { buildah --root "$DATA/root" --runroot "$DATA/run" --storage-driver "${BUILDAH_DRIVER:-overlay}" "$@"; }
bud() { bh bud --layers --jobs "${BUILDAH_JOBS:-1}" --isolation "${BUILDAH_ISOLATION:-oci}" \
          --network none --pull=never -t "$TAG" "$1"; }
case $1 in
  version) echo "buildah $(buildah version | sed -n 's/^Version: *//p') (${BUILDAH_DRIVER:-overlay}, isolation ${BUILDAH_ISOLATION:-oci}, jobs ${BUILDAH_JOBS:-1})" ;;
  setup)
    mkdir -p "$STATE" "$DATA"
    bases() {   # pull and tag the base images
      local pair id
      for pair in ${BASE_IMAGES:-busybox.tar=rbuild-bench/busybox:1}; do
        id=$(bh pull -q "docker-archive:$BASES/${pair%%=*}" 2>&1) && bh tag "${id##*$'\n'}" "docker.io/${pair#*=}" || return 1
      done
    }
    if [ -f "$conf" ]; then bases; exit; fi   # the driver and isolation that work are known
    probe=$STATE/probe && mkdir -p "$probe" && printf 'FROM rbuild-bench/busybox:1\nRUN echo ok > /ok\n' > "$probe/Dockerfile"
    for driver in ${BUILDAH_DRIVER:-overlay vfs}; do
      for isolation in ${BUILDAH_ISOLATION:-oci chroot}; do
        export BUILDAH_DRIVER=$driver BUILDAH_ISOLATION=$isolation
        bh rm -a >/dev/null 2>&1 || true; bh rmi -af >/dev/null 2>&1 || true
        if bases && TAG=rbuild-bench/probe:1 bud "$probe" >"$STATE/probe.log" 2>&1; then
          printf 'BUILDAH_DRIVER=%s\nBUILDAH_ISOLATION=%s\n' "$driver" "$isolation" > "$conf"
          bh rmi -f rbuild-bench/probe:1 >/dev/null; bh rmi --prune >/dev/null 2>&1 || true
          exit 0
        fi
      done
    done
    echo "buildah cannot build here; last try:" >&2; tail -5 "$STATE/probe.log" >&2; exit 1 ;;
  build)   bud "$CTX" ;;
  export)  bud "$CTX" && bh push -q "$TAG" "docker-archive:$OUT:$TAG" ;;
  cold)    rm -f "$STATE"/*.ready; bh rm -a >/dev/null; "$0" untag; bh rmi --prune >/dev/null
           rm -rf "$DATA/tmp"/buildah-cache-* ;;
  untag)   bh rmi -f "$TAG" >/dev/null 2>&1 || true ;;
  pull)    bh pull -q --tls-verify=false "$PULL_REF" ;;
  unpull)  bh rmi -f "$PULL_REF" >/dev/null 2>&1 || true ;;
  push)    bh push -q --tls-verify=false "$TAG" "docker://$PUSH_REF" ;;
  stash)   tar -cf "$STATE/stash.tar" -C "$DATA/tmp" . ;;
  runner)  "$0" cold ;;
  carried) mkdir -p "$DATA/tmp" && tar -xf "$STATE/stash.tar" -C "$DATA/tmp" && bud "$CTX" ;;
  release) umount -R "$DATA/root/overlay" 2>/dev/null || true ;;
  cleanup) rm -rf "$DATA/tmp" "$STATE/stash.tar"
           bh rm -a >/dev/null 2>&1 || true; bh rmi -af >/dev/null 2>&1 || true
           umount -R "$DATA/root/overlay" 2>/dev/null || true
           rm -rf "$DATA/root" "$DATA/run" 2>/dev/null || true ;;
  *) echo "unknown verb $1" >&2; exit 2 ;;
esac
