#!/usr/bin/env bash
# rbuild, daemonless. Its whole state is the store in RBUILD_ROOT=$DATA/root (DATA: $STATE, or
# with --disk fresh a fresh filesystem; see ../run.sh).
#   cold:   the store replaced by a copy of the one make-bases.sh built the base in (untimed),
#           so FROM rbuild-bench/busybox:1 resolves and nothing else is cached
#   export: `rbuild build -o type=docker,dest=$OUT`: build and archive in one command
#   pull:   `rbuild pull REF` if rbuild has that command, else a build of `FROM REF` (context w7)
#   push:   `rbuild push TAG $PUSH_REF` (a loopback registry: plain HTTP)
#   stash:  after a build, the cache mounts (RUN --mount=type=cache) put aside as $STATE/stash.tar
#           for a new runner: `rbuild cache-mount export` (RBUILD_W8C=dir: a tar of the
#           --cache-mount-dir)
#   runner: a cold store, the stash kept
#   seed:   (W10) a build that exports every step to the registry cache $W10_REF-rbuild:cache
#   fromcache: (W10) the build of a cold runner with --cache-from that cache
#   carried: the cold runner's build with the stash: `rbuild cache-mount import` + build
#           (RBUILD_W8C=dir: `tar -x` into the --cache-mount-dir + build with it)
#   release: nothing to do (no process outlives a command, nothing stays mounted)
# usage: rbuild.sh setup|version|build|export|cold|untag|pull|unpull|push|stash|runner|carried|seed|fromcache|release|cleanup
# env: see ../run.sh; RBUILD_W8C=import (default) or dir: how W8c carries the cache mounts
set -euo pipefail
RBUILD=${RBUILD:-rbuild}
DATA=${DATA:-$STATE}
export RBUILD_ROOT=$DATA/root
mounts=()   # where the cache mounts live: the store, or with RBUILD_W8C=dir a directory
[ "${RBUILD_W8C:-import}" != dir ] || mounts=(--cache-mount-dir "$DATA/cache-mounts")
rb() { "$RBUILD" build --progress plain --network none "${mounts[@]}" "$@"; }
case $1 in
  version) "$RBUILD" --version ;;
  setup)   [ -d "$BASES/rbuild-root" ] || { echo "no $BASES/rbuild-root (make-bases.sh)" >&2; exit 1; }
           "$0" cold ;;
  build)   rb -t "$TAG" "$CTX" ;;
  export)  rb -t "$TAG" -o "type=docker,dest=$OUT" "$CTX" ;;
  cold)    rm -rf "$RBUILD_ROOT" "$DATA/cache-mounts" "$STATE"/*.ready && mkdir -p "$DATA" &&
           cp -a "$BASES/rbuild-root" "$RBUILD_ROOT" ;;
  untag)   : ;;   # rbuild has no rmi; the next build moves the tag
  pull)    if "$RBUILD" --help 2>/dev/null | grep -qE '^ +pull +'; then "$RBUILD" pull "$PULL_REF"
           else rb -t "$TAG" "$WORK/w7"; fi ;;
  unpull)  "$0" cold ;;
  push)    "$RBUILD" push "$TAG" "$PUSH_REF" ;;
  stash)   if [ ${#mounts[@]} = 0 ]; then "$RBUILD" cache-mount export -o "$STATE/stash.tar"
           else tar -cf "$STATE/stash.tar" -C "$DATA/cache-mounts" .; fi ;;
  runner)  "$0" cold ;;
  carried) if [ ${#mounts[@]} = 0 ]; then "$RBUILD" cache-mount import "$STATE/stash.tar"
           else mkdir -p "$DATA/cache-mounts" && tar -xf "$STATE/stash.tar" -C "$DATA/cache-mounts"; fi
           rb -t "$TAG" "$CTX" ;;
  seed)    rb -t "$TAG" --cache-to "type=registry,ref=$W10_REF-rbuild:cache,mode=max,ignore-error=false" "$CTX" ;;
  fromcache) rb -t "$TAG" --cache-from "$W10_REF-rbuild:cache" "$CTX" ;;
  release) : ;;
  cleanup) rm -rf "$RBUILD_ROOT" "$DATA/cache-mounts" "$STATE/stash.tar" ;;
  *) echo "unknown verb $1" >&2; exit 2 ;;
esac
