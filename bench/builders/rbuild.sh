#!/usr/bin/env bash
# rbuild, daemonless. Its whole state is the store in RBUILD_ROOT=$STATE/root.
#   cold:   the store replaced by a copy of the one make-bases.sh built the base in (untimed),
#           so FROM rbuild-bench/busybox:1 resolves and nothing else is cached
#   export: `rbuild build -o type=docker,dest=$OUT`: build and archive in one command
#   pull:   `rbuild pull REF` if rbuild has that command, else a build of `FROM REF` (context w7)
# usage: rbuild.sh setup|version|build|export|cold|untag|pull|unpull|cleanup   env: see ../run.sh
set -euo pipefail
RBUILD=${RBUILD:-rbuild}
export RBUILD_ROOT=$STATE/root
rb() { "$RBUILD" build --progress plain --network none "$@"; }
case $1 in
  version) "$RBUILD" --version ;;
  setup)   [ -d "$BASES/rbuild-root" ] || { echo "no $BASES/rbuild-root (make-bases.sh)" >&2; exit 1; }
           "$0" cold ;;
  build)   rb -t "$TAG" "$CTX" ;;
  export)  rb -t "$TAG" -o "type=docker,dest=$OUT" "$CTX" ;;
  cold)    rm -rf "$RBUILD_ROOT" "$STATE/w2.ready" && mkdir -p "$STATE" && cp -a "$BASES/rbuild-root" "$RBUILD_ROOT" ;;
  untag)   : ;;   # rbuild has no rmi; the next build moves the tag
  pull)    if "$RBUILD" --help 2>/dev/null | grep -qE '^ +pull +'; then "$RBUILD" pull "$PULL_REF"
           else rb -t "$TAG" "$WORK/w7"; fi ;;
  unpull)  "$0" cold ;;
  cleanup) rm -rf "$RBUILD_ROOT" ;;
  *) echo "unknown verb $1" >&2; exit 2 ;;
esac
