#!/usr/bin/env bash
# BuildKit as Docker 20.10 runs it: `DOCKER_BUILDKIT=1 docker build`. The work happens in the
# daemon (dockerd + containerd + runc), so run.sh samples their RSS too (`daemons` verb).
# DISK=host (default): the daemon that answers on the default socket. DISK=fresh: a dockerd of
# this script's own, its data root in $DATA (a fresh filesystem, ../fresh-fs.sh), its socket,
# exec root and pid in $STATE, started by `setup` and stopped by `release`: a new filesystem
# for BuildKit means a new daemon, as on a new CI runner.
#   setup:  (fresh: start the daemon) `docker load` of each ARCHIVE=TAG of BASE_IMAGES
#   cold:   `docker rmi TAG` + `docker builder prune -af` (the daemon's WHOLE build cache)
#   export: build, then `docker save` (this BuildKit has no image-archive exporter)
#   pull:   a build of `FROM REF` (context w7), so that BuildKit's own puller runs
#   push:   `docker tag TAG $PUSH_REF` + `docker push` (loopback registries are plain HTTP to
#           Docker without configuration)
#   stash, runner, carried (W8c): BuildKit cannot hand its cache mounts to another runner (they
#           are not in any cache export, and this `docker build` has no --cache-to anyway), so
#           stash does nothing, runner is cold and carried is a plain cold build
#   seed:   (W10) what Docker 20.10 offers for a shared cache: a build with
#           BUILDKIT_INLINE_CACHE=1, pushed as $W10_REF-buildkit:cache, then removed locally
#   fromcache: (W10) a cold daemon's build with --cache-from that image
#   release: (fresh) stop the daemon, so that its filesystem can be replaced
# usage: buildkit.sh setup|version|build|export|cold|untag|pull|unpull|push|stash|runner|carried|seed|fromcache|release|cleanup|daemons
set -euo pipefail
DOCKER=${DOCKER:-docker}
DATA=${DATA:-$STATE}
own=0
if [ "${DISK:-host}" = fresh ]; then own=1; export DOCKER_HOST=unix://$STATE/docker.sock; fi
build() { DOCKER_BUILDKIT=1 "$DOCKER" build --progress plain --network none -t "$TAG" "$1"; }
stop_daemon() {
  local pid
  pid=$(cat "$STATE/dockerd.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  rm -f "$STATE/dockerd.pid"
}
start_daemon() {
  stop_daemon
  mkdir -p "$DATA/docker" "$STATE/exec"
  setsid dockerd -H "$DOCKER_HOST" --data-root "$DATA/docker" --exec-root "$STATE/exec" \
    --pidfile "$STATE/dockerd.pid" --bridge=none --iptables=false --ip-masq=false \
    >>"$STATE/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 150); do "$DOCKER" info >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "the bench's dockerd did not start; its log:" >&2; tail "$STATE/dockerd.log" >&2; return 1
}
case $1 in
  version) "$DOCKER" version --format 'docker {{.Server.Version}} (BuildKit built in), client {{.Client.Version}}' ;;
  daemons) echo dockerd containerd containerd-shim containerd-shim-runc-v2 runc buildkit-runc ;;
  setup)   [ $own = 0 ] || start_daemon
           for pair in ${BASE_IMAGES:-busybox.tar=rbuild-bench/busybox:1}; do
             "$DOCKER" load -q -i "$BASES/${pair%%=*}" >/dev/null
             "$DOCKER" image inspect "${pair#*=}" >/dev/null
           done ;;
  build)   build "$CTX" ;;
  export)  build "$CTX" && "$DOCKER" save -o "$OUT" "$TAG" ;;
  cold)    rm -f "$STATE"/*.ready; "$0" untag; "$DOCKER" builder prune -af >/dev/null ;;   # cache mounts too
  untag)   "$DOCKER" rmi -f "$TAG" >/dev/null 2>&1 || true
           [ -z "${PUSH_REF:-}" ] || "$DOCKER" rmi -f "$PUSH_REF" >/dev/null 2>&1 || true ;;
  pull)    build "$WORK/w7" ;;
  unpull)  "$DOCKER" rmi -f "$PULL_REF" >/dev/null 2>&1 || true; "$0" cold ;;
  push)    "$DOCKER" tag "$TAG" "$PUSH_REF" && "$DOCKER" push "$PUSH_REF" ;;
  stash)   echo "BuildKit cannot carry its cache mounts to another runner: W8c is a cold build" ;;
  runner)  "$0" cold ;;
  carried) build "$CTX" ;;
  seed)    DOCKER_BUILDKIT=1 "$DOCKER" build --progress plain --network none --build-arg BUILDKIT_INLINE_CACHE=1 \
             -t "$W10_REF-buildkit:cache" "$CTX"
           "$DOCKER" push -q "$W10_REF-buildkit:cache"
           "$DOCKER" rmi -f "$W10_REF-buildkit:cache" >/dev/null ;;
  fromcache) DOCKER_BUILDKIT=1 "$DOCKER" build --progress plain --network none --cache-from "$W10_REF-buildkit:cache" \
             -t "$TAG" "$CTX" ;;
  release) [ $own = 0 ] || stop_daemon ;;
  cleanup) if [ $own = 1 ]; then stop_daemon; exit 0; fi
           "$0" cold
           ids=$("$DOCKER" images -q 'rbuild-bench/*' | sort -u)
           [ -z "$ids" ] || "$DOCKER" rmi -f $ids >/dev/null 2>&1 || true
           "$DOCKER" rmi -f "$PULL_REF" >/dev/null 2>&1 || true ;;
  *) echo "unknown verb $1" >&2; exit 2 ;;
esac
