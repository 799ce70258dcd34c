#!/usr/bin/env bash
# Builds examples/hello with the release rbuild, loads the image into Docker and runs it.
# Runs as root as it is, or with sudo for another user.
# Needs busybox-static and docker.io (installed when run as root) and starts a private Docker
# daemon for the duration of the demo when none answers.
set -euo pipefail
SCRIPT_NAME=demo.sh
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ensure_packages docker.io busybox-static
start_dockerd_if_needed

cargo build --release --locked -p rbuild-builder --bin rbuild

# The example's context gets busybox copied in; work on a temp copy so the checkout stays clean.
work=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-demo.XXXXXX")
# stop_dockerd does nothing when this script started no daemon.
trap 'rm -rf "$work"; stop_dockerd' EXIT
cp -R examples/hello "$work/context"
cp /bin/busybox "$work/context/busybox"

log "rbuild build -t hello:latest -o - examples/hello | docker load"
RBUILD_ROOT=$work/store target/release/rbuild build -t hello:latest -o - "$work/context" | "$DOCKER" load
log "docker run --rm --network none hello:latest"
"$DOCKER" run --rm --network none hello:latest
# rbuild's store for the demo is a temp directory, removed on exit.
if [ -n "$RBUILD_DOCKERD_PID" ]; then
  log "left behind: nothing (the Docker daemon this demo started stops now, and its state with the image goes)"
else
  log "left behind: the image hello:latest in your Docker (docker rmi hello:latest removes it)"
fi
