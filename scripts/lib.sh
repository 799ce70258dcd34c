# shellcheck shell=bash
# Helpers shared by scripts/test.sh and scripts/demo.sh: installing the Debian packages the
# end-to-end tests and the demo need, and running a private Docker daemon when none answers.
# Source it from a script that has `set -euo pipefail`; set SCRIPT_NAME first for log lines.

# The tests and the demo talk to Debian's Docker 20.10 client: a newer `docker` on PATH may have
# no daemon behind it, and 20.10 is the oldest loader rbuild's archives must satisfy.
DOCKER=${RBUILD_TEST_DOCKER:-/usr/bin/docker}

log() { echo "[${SCRIPT_NAME:-rbuild}] $*" >&2; }
die() { log "error: $*"; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# Succeeds when the tool that Debian package $1 provides is present.
package_present() {
  case "$1" in
    docker.io) [ -x /usr/bin/docker ] && [ -x /usr/sbin/dockerd ] ;;
    # Images built FROM scratch need a static busybox; Debian's plain `busybox` is dynamic.
    busybox-static)
      if command -v dpkg-query >/dev/null; then
        dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'
      else
        [ -x /bin/busybox ]
      fi ;;
    xz-utils) command -v xz >/dev/null ;;
    graphviz) command -v dot >/dev/null ;;
    apache2-utils) command -v htpasswd >/dev/null ;;
    # debootstrap lives in /usr/sbin, which a non-root PATH may lack.
    debootstrap) [ -x /usr/sbin/debootstrap ] ;;
    dpkg-dev) command -v dpkg-scanpackages >/dev/null ;;
    uidmap) command -v newuidmap >/dev/null && command -v newgidmap >/dev/null ;;
    # scripts/image.sh: the CA bundle rbuild's image carries, and strip for its binary.
    ca-certificates) [ -f /etc/ssl/certs/ca-certificates.crt ] ;;
    binutils) command -v strip >/dev/null ;;
    # The executor tests parse examples/ci's YAML with Debian's parser.
    python3-yaml) python3 -c 'import yaml' 2>/dev/null ;;
    qemu-user-static) [ -x /usr/bin/qemu-aarch64-static ] ;;
    binfmt-support) command -v update-binfmts >/dev/null ;;
    *) command -v "$1" >/dev/null ;;
  esac
}

# ensure_packages PKG...: installs the missing ones as root, or fails naming them otherwise.
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do package_present "$pkg" || missing+=("$pkg"); done
  [ ${#missing[@]} = 0 ] && return 0
  if ! is_root; then
    die "missing packages: ${missing[*]}; install them (sudo apt-get install ${missing[*]}) or run this script as root"
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
}

# Registers QEMU user emulation for arm64 RUN steps (the platform tests): mounts binfmt_misc when
# it is not, and registers the aarch64 handler from Debian's qemu-user-static (its F flag opens
# the interpreter now, so it also runs inside a build's root file system). Root only: as another
# user it says what is missing, and the platform tests fail naming the handler.
ensure_binfmt_aarch64() {
  local dir=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  if [ -e "$dir/qemu-aarch64" ]; then return 0; fi
  if ! is_root; then
    log "binfmt_misc has no qemu-aarch64 handler; the platform tests need it (run this script as root once)"
    return 0
  fi
  if [ ! -e "$dir/register" ]; then
    mount -t binfmt_misc binfmt_misc "$dir" || die "mounting binfmt_misc on $dir failed"
  fi
  [ -r "$conf" ] || die "$conf is missing (is qemu-user-static installed?)"
  log "registering the qemu-aarch64 binfmt_misc handler"
  grep -v '^#' "$conf" | head -n1 > "$dir/register" || die "registering $conf in $dir/register failed"
}

docker_answers() { "$DOCKER" info >/dev/null 2>&1; }

# Set by start_dockerd_if_needed only when this script started the daemon; stop_dockerd acts on
# nothing else, so a daemon someone else runs is never touched.
RBUILD_DOCKERD_PID=
RBUILD_DOCKERD_DIR=

# Starts `dockerd` with its own data root, exec root, pid file and log under a temp dir when no
# daemon answers, and registers stop_dockerd on EXIT. Extra dockerd flags: RBUILD_DOCKERD_ARGS
# (for example --storage-driver=vfs where overlayfs is unavailable). DOCKER_HOST=unix:///x.sock
# gives it a socket of its own.
start_dockerd_if_needed() {
  if docker_answers; then log "using the Docker daemon that already answers"; return 0; fi
  is_root || die "no Docker daemon answers and starting one needs root (run this script as root)"
  RBUILD_DOCKERD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-dockerd.XXXXXX")
  trap stop_dockerd EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local dir=$RBUILD_DOCKERD_DIR host=()
  mkdir -p "$dir/data" "$dir/exec"
  # With DOCKER_HOST=unix:///path the daemon listens there, so it can run beside another one
  # without taking over the default socket.
  case "${DOCKER_HOST:-}" in unix://*) host=(-H "$DOCKER_HOST") ;; esac
  log "starting dockerd (state and log in $dir)"
  # shellcheck disable=SC2086  # RBUILD_DOCKERD_ARGS is meant to split into flags
  setsid /usr/sbin/dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    --bridge=none --iptables=false --ip-masq=false "${host[@]}" ${RBUILD_DOCKERD_ARGS:-} \
    >"$dir/dockerd.log" 2>&1 </dev/null &
  RBUILD_DOCKERD_PID=$!
  local _
  for _ in $(seq 60); do
    if docker_answers; then log "dockerd (pid $RBUILD_DOCKERD_PID) answers"; return 0; fi
    kill -0 "$RBUILD_DOCKERD_PID" 2>/dev/null || break
    sleep 1
  done
  tail -n 20 "$dir/dockerd.log" >&2 || true
  die "dockerd did not answer within 60 s (log above, from $dir/dockerd.log)"
}

# EXIT trap: stops the daemon start_dockerd_if_needed started (by its pid only), unmounts what it
# left under its temp dir and removes that dir. Keeps the script's exit status.
stop_dockerd() {
  local rc=$? dir=$RBUILD_DOCKERD_DIR pid=$RBUILD_DOCKERD_PID _
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "dockerd (pid $pid) ignored SIGTERM for 30 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  if [ -n "$dir" ] && [ -d "$dir" ]; then
    # Deepest mount points first, so that parents are free when their turn comes.
    awk -v prefix="$dir/" 'index($2, prefix) == 1 { print $2 }' /proc/self/mounts | sort -r |
      while read -r mnt; do umount "$mnt" 2>/dev/null || umount -l "$mnt" || true; done
    rm -rf --one-file-system "$dir" || log "could not remove $dir completely"
  fi
  RBUILD_DOCKERD_PID= RBUILD_DOCKERD_DIR=
  return "$rc"
}
