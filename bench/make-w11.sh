#!/usr/bin/env bash
# W11, a real application's build: its ingredients, made from Debian's mirror and PyPI once and
# cached, then its context and base image under WORK.
#
#   CACHE/debian-bookworm-minbase-ARCH.tar  `debootstrap --variant=minbase bookworm` from the
#                          mirror apt uses (RBUILD_BENCH_MIRROR picks another), packed without
#                          the downloaded packages and the mirror's index (as Debian's images)
#   CACHE/w11-debs/        the .debs `apt-get install PACKAGES` needs on that base, downloaded
#                          inside it (`apt-get install --download-only`, so versions match)
#   CACHE/w11-wheels/      the wheels of REQUIREMENTS for CPython 3.11 (bookworm's), `pip download`
#                          from PyPI
#   WORK/w11/              debs/ (+ Packages: a flat `file:` repository, dpkg-scanpackages),
#                          wheels/, requirements.txt, app/ (APP_FILES Python files), Dockerfile
#   WORK/bases/debian.tar  rbuild-bench/debian:12 (FROM scratch + ADD of the tar), built by rbuild
#                          into WORK/bases/rbuild-root (the store every cold rbuild run copies)
#                          and written as a docker archive for Docker and buildah
#
# usage: make-w11.sh RBUILD WORK [APP_FILES]     (APP_FILES default 2000)
# env:   RBUILD_BENCH_CACHE (default /var/cache/rbuild-bench), RBUILD_BENCH_MIRROR
# Needs root (debootstrap, chroot), debootstrap, dpkg-dev and pip; the first run needs the mirror
# and PyPI, later runs nothing but the cache.
set -euo pipefail
[ $# -ge 2 ] && [ $# -le 3 ] || { sed -n 2,22p "$0" >&2; exit 2; }
rbuild=$1 work=$2 app_files=${3:-2000}
here=$(cd "$(dirname "$0")" && pwd)
cache=${RBUILD_BENCH_CACHE:-/var/cache/rbuild-bench}
arch=$(dpkg --print-architecture)
base_tar=$cache/debian-bookworm-minbase-$arch.tar
# python3-venv brings python3 (and pip's wheel for ensurepip); tini is a small C binary.
PACKAGES=(python3 python3-venv tini)
# a small web application's dependencies: pure Python wheels and one with C code (markupsafe)
REQUIREMENTS=(flask==3.0.3 werkzeug==3.0.3 jinja2==3.1.4 markupsafe==2.1.5 itsdangerous==2.2.0
              click==8.1.7 blinker==1.8.2 gunicorn==22.0.0 packaging==24.1)
mkdir -p "$cache"

mirror() {
  if [ -n "${RBUILD_BENCH_MIRROR:-}" ]; then echo "$RBUILD_BENCH_MIRROR"; return; fi
  # the first Debian main archive apt is configured with (deb822 or one-line sources)
  local uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
        grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ')
  echo "${uri:-http://deb.debian.org/debian}"
}

if [ ! -f "$base_tar" ] || [ ! -f "$cache/w11-debs/.complete" ]; then
  tmp=$(mktemp -d "$cache/.debootstrap-XXXXXX")
  # debootstrap mounts /proc and /sys in its target: unmounted (deepest first) before removal
  remove_tmp() {
    local m
    for m in $(grep -o " $tmp/[^ ]*" /proc/self/mounts | sort -r); do umount -l "$m"; done
    rm -rf "$tmp"
  }
  trap remove_tmp EXIT
  echo "W11: debootstrap --variant=minbase bookworm from $(mirror) (once; cached in $cache)"
  debootstrap --variant=minbase bookworm "$tmp/rootfs" "$(mirror)" >"$tmp/debootstrap.log" 2>&1 ||
    { tail -20 "$tmp/debootstrap.log" >&2; exit 1; }
  cp /etc/resolv.conf "$tmp/rootfs/etc/resolv.conf"
  chroot "$tmp/rootfs" apt-get update -qq
  chroot "$tmp/rootfs" apt-get clean
  chroot "$tmp/rootfs" apt-get install -qq -y --no-install-recommends --download-only "${PACKAGES[@]}" >/dev/null
  rm -rf "$cache/w11-debs" && mkdir -p "$cache/w11-debs"
  cp "$tmp/rootfs"/var/cache/apt/archives/*.deb "$cache/w11-debs/"
  touch "$cache/w11-debs/.complete"
  chroot "$tmp/rootfs" apt-get clean
  : > "$tmp/rootfs/etc/resolv.conf"
  tar -C "$tmp/rootfs" --numeric-owner --sort=name --one-file-system -cf "$tmp/base.tar" \
    --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/cache/apt/*.bin' \
    --exclude='./var/lib/apt/lists/*_*' .
  mv "$tmp/base.tar" "$base_tar"
fi

if [ ! -f "$cache/w11-wheels/.complete" ]; then
  echo "W11: pip download of ${REQUIREMENTS[*]} (once; cached in $cache)"
  rm -rf "$cache/w11-wheels" && mkdir -p "$cache/w11-wheels"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
    --abi cp311 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    -d "$cache/w11-wheels" "${REQUIREMENTS[@]}"
  touch "$cache/w11-wheels/.complete"
fi

ctx=$work/w11
rm -rf "$ctx" && mkdir -p "$ctx/debs"
cp "$cache"/w11-debs/*.deb "$ctx/debs/"
(cd "$ctx/debs" && dpkg-scanpackages --multiversion . /dev/null > Packages 2>/dev/null)
cp -r "$cache/w11-wheels" "$ctx/wheels" && rm -f "$ctx/wheels/.complete"
printf '%s\n' "${REQUIREMENTS[@]}" > "$ctx/requirements.txt"
python3 "$here/gen.py" app "$ctx/app" "$app_files"
cat > "$ctx/Dockerfile" <<'EOF'
# the runtime: Debian + Python from a local apt repository (bound in, not copied)
FROM rbuild-bench/debian:12 AS runtime
RUN --mount=type=bind,source=debs,target=/debs \
    echo 'deb [trusted=yes] file:/debs ./' > /etc/apt/sources.list && rm -f /etc/apt/sources.list.d/* && \
    apt-get update -qq && apt-get install -qq -y --no-install-recommends python3 tini >/dev/null && \
    rm -rf /var/lib/apt/lists/*
# the build stage: a virtualenv and the wheels installed into it, offline
FROM runtime AS build
RUN --mount=type=bind,source=debs,target=/debs \
    echo 'deb [trusted=yes] file:/debs ./' > /etc/apt/sources.list && \
    apt-get update -qq && apt-get install -qq -y --no-install-recommends python3-venv >/dev/null
RUN python3 -m venv /venv
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=bind,source=wheels,target=/wheels \
    /venv/bin/pip install -q --no-index --find-links /wheels -r /tmp/requirements.txt
# the image: the runtime, the venv and the application
FROM runtime
COPY --from=build /venv /venv
COPY app /app
ENV PATH=/venv/bin:$PATH
WORKDIR /app
CMD ["tini", "--", "gunicorn", "app.wsgi:application"]
EOF
find "$ctx" -type d -exec chmod 755 {} + -o -type f -exec chmod 644 {} +
find "$ctx" -exec touch -h -d @1000000000 {} +

# the base image, built by rbuild into the store the cold runs copy
bases=$work/bases img=$bases/ctx-debian
rm -rf "$img" && mkdir -p "$img" && cp "$base_tar" "$img/debian.tar"
printf '%s\n' 'FROM scratch' 'ADD debian.tar /' 'CMD ["bash"]' > "$img/Dockerfile"
SOURCE_DATE_EPOCH=0 RBUILD_ROOT=$bases/rbuild-root "$rbuild" build --progress quiet -q --network none \
  -t rbuild-bench/debian:12 -o "type=docker,dest=$bases/debian.tar" "$img" >/dev/null
rm -rf "$img"
echo "W11: context $ctx ($(find "$ctx/debs" -name '*.deb' | wc -l) debs, $(find "$ctx/wheels" -name '*.whl' | wc -l) wheels, $app_files app files); rbuild-bench/debian:12 -> $bases/debian.tar ($(du -h "$bases/debian.tar" | cut -f1))"
