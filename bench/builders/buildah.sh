#!/usr/bin/env bash
# buildah, daemonless: `buildah bud --layers` (every step cached, as rbuild and BuildKit do), in
# a store of its own under $STATE. BUILDAH_DRIVER (overlay, else vfs) and BUILDAH_ISOLATION
# (oci, else chroot) are what `setup` found to work here; BUILDAH_JOBS (default 1, buildah's
# own default: stages one by one; 0 = all at once).
#   cold:   working containers, TAG and every unused image removed; the base stays
#   export: build, then `buildah push TAG docker-archive:$OUT`
#   pull:   `buildah pull` over plain HTTP from the local registry
#   stash:  after a build, the cache mounts (RUN --mount=type=cache) put aside for a new runner:
#           buildah keeps them outside its storage, in $TMPDIR/buildah-cache-UID (default
#           /var/tmp), which this script points at $STATE/tmp for context w8 (and only there, so
#           the other workloads' temporary files stay where buildah puts them); a tar of it
#   runner: cold (which removes the cache mounts too), the stash kept
#   carried: the cold runner's build with the stash: `tar -x` into $STATE/tmp + build (buildah
#           has no cache-mount import of its own)
# usage: buildah.sh setup|version|build|export|cold|untag|pull|unpull|stash|runner|carried|cleanup
set -euo pipefail
conf=$STATE/buildah.env
[ ! -f "$conf" ] || . "$conf"
case ${CTX:-} in */w8) export TMPDIR=$STATE/tmp; mkdir -p "$TMPDIR" ;; esac
bh() { buildah --root "$STATE/root" --runroot "$STATE/run" --storage-driver "${BUILDAH_DRIVER:-overlay}" "$@"; }
bud() { bh bud --layers --jobs "${BUILDAH_JOBS:-1}" --isolation "${BUILDAH_ISOLATION:-oci}" \
          --network none --pull=never -t "$TAG" "$1"; }
case $1 in
  version) echo "buildah $(buildah version | sed -n 's/^Version: *//p') (${BUILDAH_DRIVER:-overlay}, isolation ${BUILDAH_ISOLATION:-oci}, jobs ${BUILDAH_JOBS:-1})" ;;
  setup)
    mkdir -p "$STATE"
    probe=$STATE/probe && mkdir -p "$probe" && printf 'FROM rbuild-bench/busybox:1\nRUN echo ok > /ok\n' > "$probe/Dockerfile"
    for driver in ${BUILDAH_DRIVER:-overlay vfs}; do
      for isolation in ${BUILDAH_ISOLATION:-oci chroot}; do
        export BUILDAH_DRIVER=$driver BUILDAH_ISOLATION=$isolation
        bh rm -a >/dev/null 2>&1 || true; bh rmi -af >/dev/null 2>&1 || true
        if id=$(bh pull -q "docker-archive:$BASES/busybox.tar" 2>&1) &&
           bh tag "${id##*$'\n'}" docker.io/rbuild-bench/busybox:1 &&
           TAG=rbuild-bench/probe:1 bud "$probe" >"$STATE/probe.log" 2>&1; then
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
           rm -rf "$STATE/tmp"/buildah-cache-* ;;
  untag)   bh rmi -f "$TAG" >/dev/null 2>&1 || true ;;
  pull)    bh pull -q --tls-verify=false "$PULL_REF" ;;
  unpull)  bh rmi -f "$PULL_REF" >/dev/null 2>&1 || true ;;
  stash)   tar -cf "$STATE/stash.tar" -C "$STATE/tmp" . ;;
  runner)  "$0" cold ;;
  carried) mkdir -p "$STATE/tmp" && tar -xf "$STATE/stash.tar" -C "$STATE/tmp" && bud "$CTX" ;;
  cleanup) rm -rf "$STATE/tmp" "$STATE/stash.tar"
           bh rm -a >/dev/null 2>&1 || true; bh rmi -af >/dev/null 2>&1 || true
           umount -R "$STATE/root/overlay" 2>/dev/null || true
           rm -rf "$STATE/root" "$STATE/run" 2>/dev/null || true ;;
  *) echo "unknown verb $1" >&2; exit 2 ;;
esac
