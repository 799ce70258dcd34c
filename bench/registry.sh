#!/usr/bin/env bash
# A local, anonymous registry for the bench: Debian's docker-registry on 127.0.0.1.
#
# usage: registry.sh start DIR PORT   (re)start one with empty storage in DIR/data; waits for it
#        registry.sh stop DIR         stop the one DIR/pid names
#        registry.sh port FIRST       print the first free port from FIRST
set -euo pipefail
open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
stop() {
  local pid
  pid=$(cat "$1/pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$1/pid"
}
case ${1:-} in
  start)
    dir=${2:?} port=${3:?}
    stop "$dir"
    rm -rf "$dir/data" && mkdir -p "$dir/data"
    printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
      "$dir/data" "$port" > "$dir/config.yml"
    setsid docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 </dev/null &
    echo $! > "$dir/pid"
    for _ in $(seq 80); do open "$port" && exit 0; sleep 0.1; done
    echo "the registry on 127.0.0.1:$port did not start; its log:" >&2; tail "$dir/log" >&2; exit 1 ;;
  stop) stop "${2:?}" ;;
  port) port=${2:?}; while open "$port"; do port=$((port + 1)); done; echo "$port" ;;
  *) sed -n 2,7p "$0" >&2; exit 2 ;;
esac
