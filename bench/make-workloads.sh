#!/usr/bin/env bash
# Write the build contexts of the workloads under WORK (every one builds FROM rbuild-bench/busybox:1):
#   w1   20 x `RUN echo N > /fN`                                      W1 per-step cost
#   w2   SMALL files of 1-4 KiB (d00/s0/f00000.bin ...) + BIG MiB in big/ (5 files),
#        `COPY . /ctx`                                                W2 cold, W3 no-op, W4 one-file edit
#   w5r  `RUN dd` of W5_MIB MiB from /dev/urandom                     W5 incompressible layer + export
#   w5z  the same from /dev/zero                                      W5z compressible
#   w6   4 stages `RUN sleep 2 && echo N > /out` + 4 x COPY --from    W6 stage parallelism
#   w7   `FROM $PULL_REF` only (written by run.sh, which knows the registry port)
#   w8   a RUN that fills a cache mount (/cache) with W8_FILES files of 1-4 KiB and W8_MIB MiB
#        (4 blobs) unless /cache/done is there: a package manager's downloads; then
#        `COPY src /src` (200 files of 1-4 KiB, src/d00/s0/f00000.bin ...) and a RUN that writes
#        the md5 of every file of /cache and /src to /sum                 W8 edit, W8c cold runner
# Files get fixed modes and mtimes, so the contexts are the same bytes on every machine.
#
# usage: make-workloads.sh WORK [SMALL BIG W5_MIB [W8_FILES W8_MIB]]
#        (defaults 20000 250 512 5000 100: the real sizes; W8_FILES is rounded up to hundreds)
set -euo pipefail
[ $# -eq 1 ] || [ $# -eq 4 ] || [ $# -eq 6 ] || { sed -n 2,17p "$0" >&2; exit 2; }
work=$1 small=${2:-20000} big=${3:-250} w5=${4:-512} w8files=${5:-5000} w8mib=${6:-100}
here=$(cd "$(dirname "$0")" && pwd)
base=rbuild-bench/busybox:1
mkdir -p "$work"

fresh() { rm -rf "${work:?}/$1" && mkdir -p "$work/$1"; }

fresh w1
{ echo "FROM $base"; for n in $(seq 1 20); do echo "RUN echo $n > /f$n"; done; } > "$work/w1/Dockerfile"

fresh w2
python3 "$here/gen.py" tree "$work/w2" "$small" "$big"
printf 'FROM %s\nCOPY . /ctx\n' "$base" > "$work/w2/Dockerfile"
find "$work/w2" -type d -exec chmod 755 {} + -o -type f -exec chmod 644 {} +
find "$work/w2" -exec touch -h -d @1000000000 {} +

for kind in r:urandom z:zero; do
  fresh "w5${kind%%:*}"
  printf 'FROM %s\nRUN dd if=/dev/%s of=/big bs=1M count=%d\n' "$base" "${kind#*:}" "$w5" \
    > "$work/w5${kind%%:*}/Dockerfile"
done

fresh w6
{
  for n in 1 2 3 4; do printf 'FROM %s AS s%d\nRUN sleep 2 && echo %d > /out\n' "$base" "$n" "$n"; done
  echo "FROM $base"
  for n in 1 2 3 4; do echo "COPY --from=s$n /out /out$n"; done
} > "$work/w6/Dockerfile"

fresh w7   # its Dockerfile comes from run.sh

# w8: the first RUN stands in for a package manager filling its download cache; it writes only
# when the cache mount has no /cache/done (busybox ash: printf is a builtin, so the small files
# cost no fork each). The last RUN reads all of the cache and the source, as a build would.
fresh w8
python3 "$here/gen.py" tree "$work/w8/src" 200 0 8
dirs=$(( (w8files + 99) / 100 )) blob=$(( (w8mib + 3) / 4 ))
sed -e "s|@BASE@|$base|; s|@DIRS@|$dirs|; s|@BLOB_MIB@|$blob|" > "$work/w8/Dockerfile" <<'EOF'
FROM @BASE@
RUN --mount=type=cache,target=/cache set -e; \
    if [ ! -f /cache/done ]; then \
      echo 'W8: filling the cache mount'; \
      blk=$(head -c 3072 /dev/urandom | base64 -w 0); d=0; \
      while [ $d -lt @DIRS@ ]; do \
        mkdir -p /cache/pkgs/p$d; i=0; \
        while [ $i -lt 100 ]; do \
          n=$((d * 100 + i)); \
          printf '%s %d\n' "${blk:0:$((1024 + n * 37 % 3072))}" $n > /cache/pkgs/p$d/f$i; \
          i=$((i + 1)); \
        done; \
        d=$((d + 1)); \
      done; \
      mkdir -p /cache/blobs; \
      for b in 0 1 2 3; do dd if=/dev/urandom of=/cache/blobs/b$b bs=1M count=@BLOB_MIB@ 2>/dev/null; done; \
      touch /cache/done; \
    else echo 'W8: the cache mount is filled already'; fi
COPY src /src
RUN --mount=type=cache,target=/cache find /cache /src -type f | sort | xargs md5sum | md5sum > /sum
EOF
find "$work/w8" -type d -exec chmod 755 {} + -o -type f -exec chmod 644 {} +
find "$work/w8" -exec touch -h -d @1000000000 {} +

echo "contexts in $work: w1 w2 ($small files + $big MiB, $(du -sm "$work/w2" | cut -f1) MiB) w5r w5z ($w5 MiB) w6 w7" \
  "w8 (cache mount: $((dirs * 100)) files + $((blob * 4)) MiB)"
