#!/usr/bin/env bash
# rbuild's benchmark suite: times rbuild, BuildKit and buildah on the same workloads in one run,
# with hyperfine, and writes a markdown table (median, min–max, peak memory, rbuild's ratio to
# each peer) plus CSV/JSON under bench/results/<UTC timestamp>/. See bench/README.md.
#
# usage: bench/run.sh [--quick] [--only W1,W3] [--builders rbuild,buildkit,buildah]
#                     [--runs N] [--tiny] [--disk host|fresh|both] [--scaling]
#                     [--dir DIR] [--keep] [--verbose]
#        bench/run.sh --compare RESULTS_A RESULTS_B
#   --quick      every workload once per builder, no warm-up run, a shorter layer-writing part
#                (default: 5 runs after 1 warm-up)
#   --only       workloads: W1 W2 W3 W4 W9 W5 W5z W6 W7 W8 W8c W10 W11 W11n W11e (default all;
#                --quick leaves W11* out unless --only ALL), and LAYER for the layer-writing
#                comparison alone (it runs by default whenever W5 or W5z does)
#   --builders   default rbuild,buildkit,buildah
#   --runs N     timed runs per cell (overrides --quick's 1)
#   --tiny       small data (1,000 files + 8 MiB, 16 MiB layers, 4 MiB pull image, a W8 cache
#                mount of 500 files + 8 MiB, a W11 app of 200 files): smoke test
#   --disk D     where the builders keep their state: host (the machine's own disk, as it is),
#                fresh (a new loop-mounted ext4 with a journal per builder, made again before
#                every cold run; BuildKit gets a dockerd of the bench's own on it) or both
#                (every cell twice). Default: both, --quick: fresh
#   --scaling    instead of the workloads: W2/W3/W4 shapes (COPY of N files + one RUN) at 2,000,
#                20,000 and 200,000 files and W1 at 10, 50 and 120 RUNs (--tiny: 200, 1,000,
#                5,000 files; 5, 10, 20 RUNs), 3 runs per cell (--quick: 1); draws scaling.svg
#                and scaling.png (time against size) in the results folder
#   --compare A B  print, cell by cell, B's median against A's and rbuild ÷ each peer in both:
#                a regression shows before it lands (A, B: results folders of earlier runs)
#   --dir DIR    work in DIR (contexts, bases, builder state), kept; default: a temp dir, removed
#   --keep       keep the temp dir
#   --verbose    print the builders' output as it comes (it is always logged in the results dir)
# env: RBUILD (use this binary instead of building target/release/rbuild), DOCKER (client,
#      default /usr/bin/docker), W7_PORT (first port tried for the local registries, default
#      5077), FRESH_FS_SIZE (default 16G, sparse), BUILDAH_DRIVER, BUILDAH_ISOLATION,
#      BUILDAH_JOBS (see builders/buildah.sh), RBUILD_W8C (import or dir: how rbuild's W8c
#      carries the cache mount; see builders/rbuild.sh), RBUILD_BENCH_CACHE (where W11's Debian
#      base, .debs and wheels are kept between runs; default /var/cache/rbuild-bench).
# Needs root for apt-get (hyperfine, time, busybox-static, pigz, skopeo, docker-registry,
# buildah, docker.io, and for W11 debootstrap, dpkg-dev, python3-pip, for --scaling
# python3-matplotlib are installed when missing), to start dockerd when none answers and to
# loop-mount the fresh filesystems.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=$(dirname "$here")
usage() { sed -n 6,45p "$0" >&2; exit 2; }

quick=0 only=all builders=rbuild,buildkit,buildah runs='' tiny=0 work='' keep=0 verbose=0 disk='' scaling=0
while [ $# -gt 0 ]; do
  case $1 in
    --compare) [ $# -eq 3 ] || usage; exec python3 "$here/report.py" --compare "$2" "$3" ;;
    --disk) disk=${2:?}; shift ;;
    --disk=*) disk=${1#*=} ;;
    --scaling) scaling=1 ;;
    --quick) quick=1 ;;
    --only) only=${2:?}; shift ;;
    --only=*) only=${1#*=} ;;
    --builders) builders=${2:?}; shift ;;
    --builders=*) builders=${1#*=} ;;
    --runs) runs=${2:?}; shift ;;
    --runs=*) runs=${1#*=} ;;
    --tiny) tiny=1 ;;
    --dir) work=${2:?}; keep=1; shift ;;
    --dir=*) work=${1#*=}; keep=1 ;;
    --keep) keep=1 ;;
    --verbose|-v) verbose=1 ;;
    -h|--help) usage ;;
    *) echo "unknown argument $1" >&2; usage ;;
  esac
  shift
done

if [ -z "$runs" ]; then runs=$( { [ $quick = 1 ] && echo 1; } || { [ $scaling = 1 ] && echo 3; } || echo 5); fi
warmup=$([ $quick = 1 ] && echo 0 || echo 1)
if [ $tiny = 1 ]; then small=1000 big=8 w5=16 pull=4 w8files=500 w8mib=8 w11app=200
else small=20000 big=250 w5=512 pull=96 w8files=5000 w8mib=100 w11app=2000; fi
[ -n "$disk" ] || disk=$([ $quick = 1 ] && echo fresh || echo both)
case $disk in host|fresh) disks=("$disk") ;; both) disks=(host fresh) ;; *) echo "--disk: host, fresh or both" >&2; usage ;; esac

# ---- the workloads ----------------------------------------------------------------------------
# workload NAME MODE CONTEXT LABEL: one row of the suite, run in the order of these lines. The
# context is a folder that make-workloads.sh (or make-w11.sh, make-scaling.sh) writes under WORK.
# Modes, i.e. what happens before each timed run and what is timed:
#   cold      nothing cached (the builder's `cold`; with --disk fresh, a new filesystem); build
#   nochange  all cached, nothing changed (built once before, untimed); build
#   edit      all cached, EDIT[context] rewritten (20 bytes), image untagged; build
#   export    cold; build + archive
#   pull      base image and cache removed; pull from the local registry
#   push      cold build (untimed), an empty local registry; push of the built image
#   carried   a cold runner given the cache mounts of an earlier build (the builder's `stash`);
#             restoring them + build
#   seeded    one build (the builder's `seed`, untimed) leaves its cache in the local registry;
#             each run: a cold runner building from that cache (`fromcache`)
ALL=()
declare -A CONTEXT=() MODE=() LABEL=()
workload() { ALL+=("$1"); MODE[$1]=$2 CONTEXT[$1]=$3 LABEL[$1]=$4; }
has() { local x; for x in "${@:2}"; do [ "$x" = "$1" ] && return 0; done; return 1; }
declare -A EDIT=([w2]=d00/s0/f00000.bin [w8]=src/d00/s0/f00000.bin [w11]=app/app/VERSION)
if [ $scaling = 0 ]; then
  workload W1   cold     w1   "20 RUN steps, cold"
  workload W2   cold     w2   "COPY . of $small files + $big MiB, cold"
  workload W3   nochange w2   "no-op rebuild of W2"
  workload W4   edit     w2   "one-file-edit rebuild of W2"
  workload W9   push     w2   "push of W2's image (just built) to an empty local registry"
  workload W5   export   w5r  "$w5 MiB urandom RUN layer, build + archive"
  workload W5z  export   w5z  "$w5 MiB zero RUN layer, build + archive"
  workload W6   cold     w6   "4 parallel 2 s stages + COPY --from, cold"
  workload W7   pull     w7   "pull of a $pull MiB-payload base from a local registry"
  workload W8   edit     w8   "one-file-edit rebuild, RUN reading a warm cache mount of $w8files files + $w8mib MiB"
  workload W8c  carried  w8   "cold runner given W8's cache mount by the last build (BuildKit cannot: a plain cold build)"
  workload W10  seeded   w10  "cold runner building W2's context + 10 RUN steps from a registry cache (BuildKit: --cache-from an inline-cache image; rbuild-cold: no cache)"
  workload W11  cold     w11  "an application: Debian + apt-get from a file: repo + venv + pip wheels + $w11app-file app, cold"
  workload W11n nochange w11  "no-op rebuild of W11"
  workload W11e edit     w11  "W11 after a one-file application edit"
else   # --scaling: the sizes of make-scaling.sh
  if [ $tiny = 1 ]; then scale_files=(200 1000 5000) scale_runs=(5 10 20)
  else scale_files=(2000 20000 200000) scale_runs=(10 50 120); fi
  for n in "${scale_files[@]}"; do
    workload "W2x$n" cold     "s$n" "COPY . of $n files + one RUN, cold"
    workload "W3x$n" nochange "s$n" "no-op rebuild, $n files"
    workload "W4x$n" edit     "s$n" "one-file-edit rebuild, $n files"
    EDIT[s$n]=d00/s0/f00000.bin
  done
  for n in "${scale_runs[@]}"; do workload "W1x$n" cold "r$n" "$n RUN steps, cold"; done
fi
# --quick leaves out what would take it past 5 minutes on 2 cores: W9 and W10 (cold W2 builds before
# each timed run or its seed) and W11 (an apt-get, a venv and pip, about 20 s a builder, each cold); --only names
# them, or --only ALL times every workload.
QUICK_SKIP=(W9 W10 W11 W11n W11e)
if [ "$only" = all ] || [ "${only^^}" = ALL ]; then
  workloads=() layer=$((1 - scaling))
  for w in "${ALL[@]}"; do
    if [ "$only" = all ] && [ $quick = 1 ] && has "$w" "${QUICK_SKIP[@]}"; then continue; fi
    workloads+=("$w")
  done
else
  IFS=, read -ra workloads <<<"${only^^}"; layer=0
  for i in "${!workloads[@]}"; do
    w=${workloads[$i]}
    for x in "${ALL[@]}"; do [ "${x^^}" != "$w" ] || w=$x; done   # W5Z -> W5z
    workloads[i]=$w
    [ "$w" = LAYER ] && { layer=1; unset "workloads[$i]"; continue; }
    [ -n "${CONTEXT[$w]:-}" ] || { echo "unknown workload $w" >&2; usage; }
  done
  workloads=("${workloads[@]}")
fi
for w in "${workloads[@]}"; do case $w in W5|W5z) layer=1 ;; esac; done
# the modes and contexts this run uses
modes=() contexts=()
for w in "${workloads[@]}"; do modes+=("${MODE[$w]}") contexts+=("${CONTEXT[$w]}"); done
IFS=, read -ra builders <<<"$builders"
for b in "${builders[@]}"; do [ -x "$here/builders/$b.sh" ] || { echo "no builder bench/builders/$b.sh" >&2; exit 2; }; done

log() { printf '== %s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---- tools ------------------------------------------------------------------------------------
declare -A PKG=([hyperfine]=hyperfine [/usr/bin/time]=time [busybox]=busybox-static [pigz]=pigz
                [python3]=python3 [skopeo]=skopeo [docker-registry]=docker-registry
                [buildah]=buildah [dockerd]=docker.io [mkfs.ext4]=e2fsprogs [losetup]=mount
                [debootstrap]=debootstrap [dpkg-scanpackages]=dpkg-dev)
want=(hyperfine /usr/bin/time busybox pigz python3)
if has W7 "${workloads[@]}" || has W10 "${workloads[@]}" || has push "${modes[@]}"; then want+=(skopeo docker-registry); fi
has buildah "${builders[@]}" && want+=(buildah)
has buildkit "${builders[@]}" && want+=(dockerd)
has fresh "${disks[@]}" && want+=(mkfs.ext4 losetup)
has w11 "${contexts[@]}" && want+=(debootstrap dpkg-scanpackages)
missing=()
for t in "${want[@]}"; do command -v "$t" >/dev/null || missing+=("${PKG[$t]}"); done
# W11's set-up downloads wheels with pip; --scaling draws with Debian's matplotlib
if has w11 "${contexts[@]}" && ! python3 -m pip --version >/dev/null 2>&1; then missing+=(python3-pip); fi
if [ $scaling = 1 ] && ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then missing+=(python3-matplotlib); fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
DOCKER=${DOCKER:-$( [ -x /usr/bin/docker ] && echo /usr/bin/docker || echo docker )}
export DOCKER

# ---- rbuild, release build, and the layer-writing probe (a harness-less bench target) --------
throughput_bin=
if [ -z "${RBUILD:-}" ]; then
  log "cargo build --release (rbuild)"
  (cd "$project" && cargo build --release --quiet -p rbuild-builder --bin rbuild)
  target_dir=$(cd "$project" && cargo metadata --format-version 1 --no-deps |
               python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  RBUILD=$target_dir/release/rbuild
fi
RBUILD=$(command -v "$RBUILD")
export RBUILD
if [ $layer = 1 ]; then
  log "cargo bench --no-run (layer_throughput)"
  throughput_bin=$(cd "$project" && cargo bench --quiet -p rbuild-store --bench layer_throughput --no-run \
      --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "layer_throughput" and m.get("executable"):
        print(m["executable"])') || true
  [ -n "$throughput_bin" ] || log "could not build store/benches/layer_throughput.rs: no rbuild row in the layer table"
fi

# ---- work dir, results dir, clean-up ----------------------------------------------------------
if [ -z "$work" ]; then work=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-bench.XXXXXX"); else mkdir -p "$work"; fi
WORK=$(cd "$work" && pwd) BASES=$WORK/bases
export WORK BASES
res=$here/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$res"
dockerd_pid='' started_at=$(date +%s)
FS_SIZE=${FRESH_FS_SIZE:-16G}
# use_state BUILDER DISK: STATE (the builder's settings, stash, markers) and DATA (where its
# images, cache and containers go: STATE itself on the host's disk, STATE/fs, a fresh
# filesystem's mount point, with --disk fresh), exported for builders/*.sh.
use_state() {
  export DISK=$2 STATE=$WORK/state/$1 DATA=$WORK/state/$1
  [ "$2" = host ] || { STATE=$WORK/state-fresh/$1; DATA=$STATE/fs; }
  export OUT=$DATA/out.tar
}
cleanup() {
  set +e
  local d b
  for d in "${disks[@]}"; do
    for b in "${builders[@]}"; do
      use_state "$b" "$d"
      [ -d "$STATE" ] && "$here/builders/$b.sh" cleanup >/dev/null 2>&1
      [ "$d" = host ] || { "$here/builders/$b.sh" release >/dev/null 2>&1; "$here/fresh-fs.sh" --drop "$DATA"; }
    done
  done
  "$here/registry.sh" stop "$WORK/registry"; "$here/registry.sh" stop "$WORK/push-registry"
  if [ -n "$dockerd_pid" ]; then
    log "stopping the dockerd this run started ($dockerd_pid)"
    kill "$dockerd_pid"; for _ in $(seq 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
  fi
  if [ $keep = 0 ]; then rm -rf "$WORK"; else log "work dir kept: $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- Docker daemon (BuildKit) -----------------------------------------------------------------
# --disk host uses the daemon that answers (or one started here); --disk fresh starts one of the
# bench's own per cold run, its data root on the fresh filesystem (builders/buildkit.sh).
if has buildkit "${builders[@]}" && has host "${disks[@]}" && ! "$DOCKER" info >/dev/null 2>&1; then
  log "no Docker daemon answers: starting one (data under $WORK/dockerd)"
  mkdir -p "$WORK/dockerd"
  setsid dockerd --data-root "$WORK/dockerd/data" --exec-root "$WORK/dockerd/exec" \
    --pidfile "$WORK/dockerd/pid" --bridge=none --iptables=false --ip-masq=false \
    >"$WORK/dockerd/log" 2>&1 </dev/null &
  dockerd_pid=$!
  for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 1; done
  "$DOCKER" info >/dev/null 2>&1 || { tail "$WORK/dockerd/log" >&2; exit 1; }
fi

# ---- bases and workloads ----------------------------------------------------------------------
log "bases (built by rbuild) and workloads in $WORK"
"$here/make-bases.sh" "$RBUILD" "$WORK" "$pull" >&2
if [ $scaling = 0 ]; then
  # make-workloads.sh's contexts, unless only W11 runs (they take a minute to write)
  for c in "${contexts[@]}"; do
    if [ "$c" != w11 ]; then "$here/make-workloads.sh" "$WORK" "$small" "$big" "$w5" "$w8files" "$w8mib" >&2; break; fi
  done
else
  "$here/make-scaling.sh" "$WORK" "${scale_files[*]}" "${scale_runs[*]}" >&2
fi
# the base images a cell's builder needs: ARCHIVE=TAG under BASES (see builders/*.sh setup)
BUSYBOX_BASE=busybox.tar=rbuild-bench/busybox:1 DEBIAN_BASE=debian.tar=rbuild-bench/debian:12
export BASE_IMAGES=$BUSYBOX_BASE
if has w11 "${contexts[@]}"; then
  "$here/make-w11.sh" "$RBUILD" "$WORK" "$w11app" >&2
  BASE_IMAGES="$BUSYBOX_BASE $DEBIAN_BASE"
fi
bases_for() { case $1 in w11) echo "$BUSYBOX_BASE $DEBIAN_BASE" ;; *) echo "$BUSYBOX_BASE" ;; esac; }

# ---- local registries: W7 pulls from one (W10 keeps its caches there), W9 pushes to a new one per run
PULL_REF='' PUSH_REF='' W10_REF=''
if has W7 "${workloads[@]}" || has W10 "${workloads[@]}"; then
  port=$("$here/registry.sh" port "${W7_PORT:-5077}")
  "$here/registry.sh" start "$WORK/registry" "$port"
  if has W7 "${workloads[@]}"; then
    PULL_REF=127.0.0.1:$port/rbuild-bench/pull:1
    skopeo copy -q --dest-tls-verify=false "oci-archive:$BASES/pull.oci.tar" "docker://$PULL_REF" >&2
    printf 'FROM %s\n' "$PULL_REF" > "$WORK/w7/Dockerfile"
  fi
  W10_REF=127.0.0.1:$port/rbuild-bench/w10   # each builder's cache: $W10_REF-BUILDER:cache
fi
if has push "${modes[@]}"; then
  port=$("$here/registry.sh" port $(( ${port:-${W7_PORT:-5077}} + 1 )))
  PUSH_REF=127.0.0.1:$port/rbuild-bench/push:1
  mkdir -p "$WORK/push-registry"
fi
export PULL_REF PUSH_REF W10_REF

# ---- W10: W2's context + 10 RUN steps (a copy: W4 edits w2 in place) -------------------------
if has W10 "${workloads[@]}"; then
  rm -rf "$WORK/w10" && cp -a "$WORK/w2" "$WORK/w10"
  { printf 'FROM rbuild-bench/busybox:1\nCOPY . /ctx\n'
    for i in $(seq 10); do printf 'RUN head -c 1048576 /dev/urandom > /step%d && ls /ctx | wc -l > /count%d\n' "$i" "$i"; done
  } > "$WORK/w10/Dockerfile"
fi

# ---- machine ----------------------------------------------------------------------------------
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "kernel: $(uname -srm)"
  echo "cpus: $(nproc) x $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "disk: $(df -hT "$WORK" | awk 'NR == 2 {print $1, $2, $3}'), journal: $(
    dumpe2fs -h "$(df "$WORK" | awk 'NR == 2 {print $1}')" 2>/dev/null | grep -q '^Filesystem features:.*has_journal' && echo yes || echo "no or not ext4")"
  echo "disks timed: ${disks[*]} (fresh: a new ext4 with a journal, $FS_SIZE sparse, on a loop device with direct I/O, per builder, made again before every cold run)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "hyperfine: $(hyperfine --version)"
  echo "rbuild: $("$RBUILD" --version 2>&1 | head -1) ($RBUILD)"
  echo "runs per cell: $runs after $warmup warm-up; sizes: w2 $small files + $big MiB, W5 $w5 MiB, W7 $pull MiB payload, W8 cache mount $w8files files + $w8mib MiB, W11 app $w11app files"
  if has W8c "${workloads[@]}"; then echo "rbuild's W8c carries the cache mount by: ${RBUILD_W8C:-import}"; fi
} > "$res/machine.txt"
printf '{"small_files": %d, "big_mib": %d, "w5_mib": %d, "pull_mib": %d, "w8_files": %d, "w8_mib": %d, "w11_app_files": %d, "runs": %d, "warmup": %d, "scaling": %d}\n' \
  "$small" "$big" "$w5" "$pull" "$w8files" "$w8mib" "$w11app" "$runs" "$warmup" "$scaling" > "$res/params.json"
for w in "${workloads[@]}"; do printf '%s\t%s\t%s\t%s\n' "$w" "${MODE[$w]}" "${CONTEXT[$w]}" "${LABEL[$w]}"; done > "$res/workloads.tsv"

# ---- builders ---------------------------------------------------------------------------------
ready=()   # BUILDER/DISK that set up
for d in "${disks[@]}"; do
  for b in "${builders[@]}"; do
    use_state "$b" "$d"
    mkdir -p "$STATE"
    [ "$d" = host ] || "$here/fresh-fs.sh" "$DATA" "$FS_SIZE"
    if "$here/builders/$b.sh" setup >"$res/setup-$b-$d.log" 2>&1; then
      ready+=("$b/$d")
      [ "$d" != "${disks[0]}" ] || echo "$b: $("$here/builders/$b.sh" version 2>&1 | head -1)" >> "$res/machine.txt"
    else
      log "$b ($d disk): setup failed, see $res/setup-$b-$d.log"
      echo "$b: setup failed on the $d disk" >> "$res/machine.txt"
    fi
  done
done
cat "$res/machine.txt" >&2

# ---- timing -----------------------------------------------------------------------------------
# sample_rss NAMES...: the largest summed RSS (KiB) of the processes so named, printed when killed.
sample_rss() {
  local peak=0 now names
  names=$(IFS=,; echo "$*")
  trap 'echo "$peak"; exit 0' TERM
  while :; do
    now=$(ps -C "$names" -o rss= 2>/dev/null | awk '{s += $1} END {print s + 0}')
    [ "$now" -gt "$peak" ] && peak=$now
    sleep 0.2
  done
}

q() { printf '%q' "$1"; }

# Contexts whose build a later cell reuses (no-op and edit rebuilds): kept between cells.
keep_built=()
for w in "${workloads[@]}"; do case ${MODE[$w]} in nochange|edit) keep_built+=("${CONTEXT[$w]}") ;; esac; done

bench_cell() { # WORKLOAD BUILDER DISK
  local w=$1 b=$2 d=$3 id=$1-$2 B mode=${MODE[$1]} verb=build prep=() sampler='' timer cold
  [ "$d" = host ] || id=$id-$d
  B=$(q "$here/builders/$b.sh")
  use_state "$b" "$d"
  export CTX=$WORK/${CONTEXT[$w]} TAG=rbuild-bench/${CONTEXT[$w]}-$b:latest BASE_IMAGES
  BASE_IMAGES=$(bases_for "${CONTEXT[$w]}")
  local logf=$res/$id.log sink
  sink=$([ $verbose = 1 ] && echo "2>&1 | tee -a $(q "$logf")" || echo ">>$(q "$logf") 2>&1")
  # what "nothing cached" takes: the builder's cold, or a new filesystem and a new set-up on it
  cold="$B cold $sink"
  [ "$d" = host ] || cold="{ $B release; $(q "$here/fresh-fs.sh") $(q "$DATA") $FS_SIZE && rm -f $(q "$STATE")/*.ready && $B setup; } $sink"
  case $mode in
    cold)   prep=(--prepare "$cold") ;;
    export) prep=(--prepare "$cold; rm -f $(q "$OUT")"); verb="export" ;;
    pull)   prep=(--prepare "$B unpull $sink; $cold"); verb=pull ;;
    push)   local port=${PUSH_REF#*:}; port=${port%%/*}
            prep=(--prepare "$cold && $B build $sink && $(q "$here/registry.sh") start $(q "$WORK/push-registry") $port $sink")
            verb=push ;;
    nochange|edit)
      local built=$STATE/${CONTEXT[$w]}.ready   # the last cell built it, or it is built now
      if [ ! -f "$built" ]; then
        bash -c "$cold" >>"$logf" 2>&1 && "$B" build >>"$logf" 2>&1 && touch "$built" || return 1
      fi
      if [ "$mode" = edit ]; then
        prep=(--prepare "$B untag $sink; date +%s%N | dd of=$(q "$CTX/${EDIT[${CONTEXT[$w]}]}") conv=notrunc status=none")
      fi ;;
    seeded)    # W10: one build leaves the builder's cache in the registry; each run: a cold runner
      bash -c "$cold" >>"$logf" 2>&1 && "$B" seed >>"$logf" 2>&1 || return 1
      prep=(--prepare "$cold"); verb=fromcache ;;
    carried)   # one build fills the cache mounts, the builder puts them aside; each run: a cold runner
      bash -c "$cold" >>"$logf" 2>&1 && "$B" build >>"$logf" 2>&1 && "$B" stash >>"$logf" 2>&1 || return 1
      prep=(--prepare "$B runner $sink"); verb=carried
      [ "$d" = host ] || prep=(--prepare "$cold"); ;;
  esac
  timer="/usr/bin/time -a -o $(q "$res/$id.rss") -f %M $B $verb $sink"
  if [ "$b" = buildkit ]; then
    local daemons; daemons=$("$here/builders/$b.sh" daemons)
    ps -C "${daemons// /,}" -o rss= | awk '{s += $1} END {print s + 0}' > "$res/$id.daemon-idle"
    sample_rss $daemons > "$res/$id.daemon-peak" & sampler=$!
  fi
  local ok=0
  hyperfine --shell=bash --style basic --runs "$runs" --warmup "$warmup" "${prep[@]}" -n "$id" \
    --export-json "$res/$id.json" "$timer" >&2 || ok=$?
  if [ -n "$sampler" ]; then kill "$sampler"; wait "$sampler" || true; fi
  [ $ok = 0 ] && [ "$mode" = cold ] && touch "$STATE/${CONTEXT[$w]}.ready"
  return $ok
}

: > "$res/cells.tsv"
for w in "${workloads[@]}"; do
  for d in "${disks[@]}"; do
    for b in "${builders[@]}"; do
      if ! has "$b/$d" "${ready[@]}"; then status=setup-failed
      elif [ "${MODE[$w]}" = seeded ] && [ "$b" = buildah ]; then
        status=not-timed   # W10: this suite gives buildah no registry-cache verbs (seed, fromcache)
      else
        log "$w $b (${MODE[$w]}, $d disk)"
        if bench_cell "$w" "$b" "$d"; then status=ok
        else status=failed; log "$w $b failed; last lines of the log:"; tail -n 5 "$res/$w-$b"*.log >&2 || true
        fi
        # Leave nothing behind that the next cell could profit from, except a build that a
        # later no-op or edit cell reuses. (On a fresh disk the next cold run starts anew.)
        use_state "$b" "$d"
        export TAG=rbuild-bench/${CONTEXT[$w]}-$b:latest
        if [ "$d" = host ] && ! has "${CONTEXT[$w]}" "${keep_built[@]}"; then "$here/builders/$b.sh" cold >/dev/null 2>&1 || true; fi
        [ "$w" != W7 ] || [ "$d" != host ] || "$here/builders/$b.sh" unpull >/dev/null 2>&1 || true
        rm -f "$OUT" "$STATE/stash.tar"
      fi
      printf '%s\t%s\t%s\t%s\n' "$w" "$b" "$status" "$d" >> "$res/cells.tsv"
    done
  done
done

# ---- W7 reference: the same pull by skopeo into an OCI layout ---------------------------------
# What a pull costs without a builder around it: download, digest checks, blobs written. rbuild's
# W7 row also unpacks the layer into a snapshot, which skopeo does not.
if has W7 "${workloads[@]}"; then
  log "W7 skopeo (reference: skopeo copy docker://… oci:…)"
  dest=$WORK/skopeo-pull
  if hyperfine --shell=bash --style basic --runs "$runs" --warmup "$warmup" -n W7-skopeo \
       --prepare "rm -rf $(q "$dest")" --export-json "$res/W7-skopeo.json" \
       "/usr/bin/time -a -o $(q "$res/W7-skopeo.rss") -f %M skopeo copy -q --src-tls-verify=false docker://$PULL_REF oci:$(q "$dest"):pull >>$(q "$res/W7-skopeo.log") 2>&1" >&2; then
    printf 'W7\tskopeo\tok\t-\n' >> "$res/cells.tsv"
  else
    printf 'W7\tskopeo\tfailed\t-\n' >> "$res/cells.tsv"
  fi
  rm -rf "$dest"
fi

# ---- W9 reference: skopeo uploading the same image from an OCI layout --------------------------
# The layout is rbuild's `-o type=oci` of w2 (gzip blobs: skopeo only uploads them, as a push of
# stored compressed layers does), unpacked from its archive before timing.
if has W9 "${workloads[@]}"; then
  log "W9 skopeo (reference: skopeo copy oci:… docker://…)"
  layout=$WORK/w9-layout port=${PUSH_REF#*:}; port=${port%%/*}
  rm -rf "$layout" "$WORK/w9-root" && mkdir -p "$layout" && cp -a "$BASES/rbuild-root" "$WORK/w9-root"
  if RBUILD_ROOT=$WORK/w9-root "$RBUILD" build --progress quiet -q --network none -t rbuild-bench/w9:1 \
       -o "type=oci,dest=$WORK/w9.oci.tar" "$WORK/w2" >>"$res/W9-skopeo.log" 2>&1 &&
     tar -xf "$WORK/w9.oci.tar" -C "$layout" && rm -rf "$WORK/w9-root" "$WORK/w9.oci.tar" &&
     hyperfine --shell=bash --style basic --runs "$runs" --warmup "$warmup" -n W9-skopeo \
       --prepare "$(q "$here/registry.sh") start $(q "$WORK/push-registry") $port >>$(q "$res/W9-skopeo.log") 2>&1" \
       --export-json "$res/W9-skopeo.json" \
       "/usr/bin/time -a -o $(q "$res/W9-skopeo.rss") -f %M skopeo copy -q --dest-tls-verify=false oci:$(q "$layout") docker://$PUSH_REF >>$(q "$res/W9-skopeo.log") 2>&1" >&2; then
    printf 'W9\tskopeo\tok\t-\n' >> "$res/cells.tsv"
  else
    printf 'W9\tskopeo\tfailed\t-\n' >> "$res/cells.tsv"
  fi
  "$here/registry.sh" stop "$WORK/push-registry"
  rm -rf "$layout"
fi

# ---- W12: a two-platform build against two single-platform builds (bench/platforms.sh) -------
# rbuild only (BuildKit 0.8 of Docker 20.10 has no multi-platform build without buildx); with
# every workload, or alone with bench/platforms.sh.
if [ "$only" = all ] && has "rbuild/${disks[0]}" "${ready[@]}"; then
  log "W12 rbuild (two platforms in one build against two builds)"
  if RUNS=$runs WARMUP=$warmup "$here/platforms.sh" "$res" >>"$res/W12.log" 2>&1; then status=ok
  else status=failed; tail -n 5 "$res/W12.log" >&2 || true
  fi
  printf 'W12\trbuild\t%s\t-\nW12\trbuild-2x\t%s\t-\n' "$status" "$status" >> "$res/cells.tsv"
fi

# ---- W10 reference: rbuild's own cold build of the same context, no cache ---------------------
if has W10 "${workloads[@]}" && has "rbuild/${disks[0]}" "${ready[@]}"; then
  log "W10 rbuild-cold (reference: rbuild's cold build without --cache-from, ${disks[0]} disk's state)"
  use_state rbuild "${disks[0]}"
  export CTX=$WORK/w10 TAG=rbuild-bench/w10-rbuild:latest
  B=$(q "$here/builders/rbuild.sh")
  if hyperfine --shell=bash --style basic --runs "$runs" --warmup "$warmup" -n W10-rbuild-cold \
       --prepare "$B cold >>$(q "$res/W10-rbuild-cold.log") 2>&1" --export-json "$res/W10-rbuild-cold.json" \
       "/usr/bin/time -a -o $(q "$res/W10-rbuild-cold.rss") -f %M $B build >>$(q "$res/W10-rbuild-cold.log") 2>&1" >&2; then
    printf 'W10\trbuild-cold\tok\t-\n' >> "$res/cells.tsv"
  else
    printf 'W10\trbuild-cold\tfailed\t-\n' >> "$res/cells.tsv"
  fi
  "$B" cold >/dev/null 2>&1 || true
fi

# ---- layer writing: rbuild's writer against tar | pigz on W5's data ----------------------------
if [ $layer = 1 ]; then
  # --quick: W5's kind of data and gzip against pigz only; else also zeros and every compression.
  datasets=(urandom zero) writers=(rbuild-gzip rbuild-zstd rbuild-none pigz-6 pigz-1)
  [ $quick = 0 ] || datasets=(urandom) writers=(rbuild-gzip rbuild-zstd pigz-6 pigz-1)
  log "layer writing: $w5 MiB from /dev/${datasets[*]}"
  for data in "${datasets[@]}"; do
    mkdir -p "$WORK/layer/$data" && head -c "${w5}M" "/dev/$data" > "$WORK/layer/$data/big"
  done
  sync
  : > "$res/layer.tsv"
  for data in "${datasets[@]}"; do
    d=$(q "$WORK/layer/$data") o=$(q "$WORK/layer/out")
    declare -A CMD=(
      [pigz-6]="tar -C $d -cf - . | pigz -6 > $o"
      [pigz-1]="tar -C $d -cf - . | pigz -1 > $o"
    )
    if [ -n "$throughput_bin" ]; then
      CMD[rbuild-gzip]="$(q "$throughput_bin") $d gzip $(q "$WORK/layer/store")"
      CMD[rbuild-zstd]="$(q "$throughput_bin") $d zstd $(q "$WORK/layer/store")"
      CMD[rbuild-none]="$(q "$throughput_bin") $d none $(q "$WORK/layer/store")"
    fi
    for name in "${writers[@]}"; do
      [ -n "${CMD[$name]:-}" ] || continue
      id=layer-$data-$name
      if hyperfine --shell=bash --style basic --runs "$runs" --warmup "$warmup" -n "$id" \
           --prepare "rm -rf $o $(q "$WORK/layer/store")" --export-json "$res/$id.json" \
           "/usr/bin/time -a -o $(q "$res/$id.rss") -f %M bash -c $(q "${CMD[$name]}") >>$(q "$res/$id.log") 2>&1" >&2; then
        printf '%s\t%s\t%s\t%s\n' "$data" "$name" "$(du -b "$WORK/layer/$data/big" | cut -f1)" ok >> "$res/layer.tsv"
      else
        printf '%s\t%s\t0\tfailed\n' "$data" "$name" >> "$res/layer.tsv"
      fi
    done
    unset CMD
  done
  rm -rf "$WORK/layer"
fi

echo "total time: $(( $(date +%s) - started_at )) s (tools and the rbuild build before it not counted)" >> "$res/machine.txt"
python3 "$here/report.py" "$res"
if [ $scaling = 1 ]; then
  if /usr/bin/python3 "$here/plot_scaling.py" "$res"; then log "scaling.svg and scaling.png in $res"
  else log "could not draw the scaling figure (python3-matplotlib)"; fi
fi
log "results: $res"
