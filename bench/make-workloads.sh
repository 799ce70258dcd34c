#!/usr/bin/env bash
# Write the build contexts of the workloads under WORK (every one builds FROM rbuild-bench/busybox:1):
#   w1   20 x `RUN echo N > /fN`                                      W1 per-step cost
#   w2   SMALL files of 1-4 KiB (d00/s0/f00000.bin ...) + BIG MiB in big/ (5 files),
#        `COPY . /ctx`                                                W2 cold, W3 no-op, W4 one-file edit
#   w5r  `RUN dd` of W5_MIB MiB from /dev/urandom                     W5 incompressible layer + export
#   w5z  the same from /dev/zero                                      W5z compressible
#   w6   4 stages `RUN sleep 2 && echo N > /out` + 4 x COPY --from    W6 stage parallelism
#   w7   `FROM $PULL_REF` only (written by run.sh, which knows the registry port)
# Files get fixed modes and mtimes, so the contexts are the same bytes on every machine.
#
# usage: make-workloads.sh WORK [SMALL BIG W5_MIB]     (defaults 20000 250 512: the real sizes)
set -euo pipefail
[ $# -eq 1 ] || [ $# -eq 4 ] || { sed -n 2,12p "$0" >&2; exit 2; }
work=$1 small=${2:-20000} big=${3:-250} w5=${4:-512}
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
echo "contexts in $work: w1 w2 ($small files + $big MiB, $(du -sm "$work/w2" | cut -f1) MiB) w5r w5z ($w5 MiB) w6 w7"
