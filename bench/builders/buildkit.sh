#!/usr/bin/env bash
# BuildKit as Docker 20.10 runs it: `DOCKER_BUILDKIT=1 docker build`. The work happens in the
# daemon (dockerd + containerd + runc), so run.sh samples their RSS too (`daemons` verb).
#   cold:   `docker rmi TAG` + `docker builder prune -af` (the daemon's WHOLE build cache)
#   export: build, then `docker save` (this BuildKit has no image-archive exporter)
#   pull:   a build of `FROM REF` (context w7), so that BuildKit's own puller runs
#   stash, runner, carried (W8c): BuildKit cannot hand its cache mounts to another runner (they
#           are not in any cache export, and this `docker build` has no --cache-to anyway), so
#           stash does nothing, runner is cold and carried is a plain cold build
#   seed:   (W10) what Docker 20.10 offers for a shared cache: a build with
#           BUILDKIT_INLINE_CACHE=1, pushed as $W10_REF-buildkit:cache, then removed locally
#   fromcache: (W10) a cold daemon's build with --cache-from that image
# usage: buildkit.sh setup|version|build|export|cold|untag|pull|unpull|stash|runner|carried|seed|fromcache|cleanup|daemons
set -euo pipefail
DOCKER=${DOCKER:-docker}
build() { DOCKER_BUILDKIT=1 "$DOCKER" build --progress plain --network none -t "$TAG" "$1"; }
case $1 in
  version) "$DOCKER" version --format 'docker {{.Server.Version}} (BuildKit built in), client {{.Client.Version}}' ;;
  daemons) echo dockerd containerd containerd-shim containerd-shim-runc-v2 runc buildkit-runc ;;
  setup)   "$DOCKER" load -q -i "$BASES/busybox.tar" >/dev/null
           "$DOCKER" image inspect rbuild-bench/busybox:1 >/dev/null ;;
  build)   build "$CTX" ;;
  export)  build "$CTX" && "$DOCKER" save -o "$OUT" "$TAG" ;;
  cold)    rm -f "$STATE"/*.ready; "$0" untag; "$DOCKER" builder prune -af >/dev/null ;;   # cache mounts too
  untag)   "$DOCKER" rmi -f "$TAG" >/dev/null 2>&1 || true ;;
  pull)    build "$WORK/w7" ;;
  unpull)  "$DOCKER" rmi -f "$PULL_REF" >/dev/null 2>&1 || true; "$0" cold ;;
  stash)   echo "BuildKit cannot carry its cache mounts to another runner: W8c is a cold build" ;;
  runner)  "$0" cold ;;
  carried) build "$CTX" ;;
  seed)    DOCKER_BUILDKIT=1 "$DOCKER" build --progress plain --network none --build-arg BUILDKIT_INLINE_CACHE=1 \
             -t "$W10_REF-buildkit:cache" "$CTX"
           "$DOCKER" push -q "$W10_REF-buildkit:cache"
           "$DOCKER" rmi -f "$W10_REF-buildkit:cache" >/dev/null ;;
  fromcache) DOCKER_BUILDKIT=1 "$DOCKER" build --progress plain --network none --cache-from "$W10_REF-buildkit:cache" \
             -t "$TAG" "$CTX" ;;
  cleanup) "$0" cold
           ids=$("$DOCKER" images -q 'rbuild-bench/*' | sort -u)
           [ -z "$ids" ] || "$DOCKER" rmi -f $ids >/dev/null 2>&1 || true
           "$DOCKER" rmi -f "$PULL_REF" >/dev/null 2>&1 || true ;;
  *) echo "unknown verb $1" >&2; exit 2 ;;
esac
