#!/usr/bin/env bash
# Write the contexts of `run.sh --scaling` under WORK (every one builds FROM rbuild-bench/busybox:1):
#   sN   N files of 1-4 KiB (gen.py tree, d00/s0/f00000.bin ...), `COPY . /ctx` and one RUN:
#        W2xN cold, W3xN no-op, W4xN one-file edit
#   rN   N x `RUN echo I > /fI`: W1xN cold
# Files get fixed modes and mtimes, as in make-workloads.sh.
#
# usage: make-scaling.sh WORK "FILES..." "RUNS..."     e.g. make-scaling.sh /tmp/w "2000 20000" "10 50"
set -euo pipefail
[ $# -eq 3 ] || { sed -n 2,9p "$0" >&2; exit 2; }
work=$1 files=$2 runs=$3
here=$(cd "$(dirname "$0")" && pwd)
base=rbuild-bench/busybox:1
for n in $files; do
  rm -rf "${work:?}/s$n" && mkdir -p "$work/s$n"
  python3 "$here/gen.py" tree "$work/s$n" "$n" 0
  printf 'FROM %s\nCOPY . /ctx\nRUN ls /ctx > /listing\n' "$base" > "$work/s$n/Dockerfile"
  find "$work/s$n" -type d -exec chmod 755 {} + -o -type f -exec chmod 644 {} +
  find "$work/s$n" -exec touch -h -d @1000000000 {} +
done
for n in $runs; do
  rm -rf "${work:?}/r$n" && mkdir -p "$work/r$n"
  { echo "FROM $base"; for i in $(seq 1 "$n"); do echo "RUN echo $i > /f$i"; done; } > "$work/r$n/Dockerfile"
done
echo "scaling contexts in $work: $(for n in $files; do printf 's%s ' "$n"; done)$(for n in $runs; do printf 'r%s ' "$n"; done)"
