#!/usr/bin/env bash
# rbuild's benchmark suite: times rbuild, BuildKit and buildah on the same workloads in one run,
# with hyperfine, and writes a markdown table (median, min–max, peak memory, rbuild's ratio to
# each peer) plus CSV/JSON under bench/results/<UTC timestamp>/. See bench/README.md.
#
# usage: bench/run.sh [--quick] [--only W1,W3] [--builders rbuild,buildkit,buildah]
#                     [--runs N] [--tiny] [--dir DIR] [--keep] [--verbose]
#   --quick      every workload once per builder, no warm-up run, a shorter layer-writing part
#                (default: 5 runs after 1 warm-up)
#   --only       workloads: W1 W2 W3 W4 W5 W5z W6 W7 W8 W8c W10 (default all), and LAYER for the layer-writing
#                comparison alone (it runs by default whenever W5 or W5z does)
#   --builders   default rbuild,buildkit,buildah
#   --runs N     timed runs per cell (overrides --quick's 1)
#   --tiny       small data (1,000 files + 8 MiB, 16 MiB layers, 4 MiB pull image, a W8 cache
#                mount of 500 files + 8 MiB): smoke test
#   --dir DIR    work in DIR (contexts, bases, builder state), kept; default: a temp dir, removed
#   --keep       keep the temp dir
#   --verbose    print the builders' output as it comes (it is always logged in the results dir)
# env: RBUILD (use this binary instead of building target/release/rbuild), DOCKER (client,
#      default /usr/bin/docker), W7_PORT (first port tried for the local registry, default 5077),
#      BUILDAH_DRIVER, BUILDAH_ISOLATION, BUILDAH_JOBS (see builders/buildah.sh), RBUILD_W8C
#      (import or dir: how rbuild's W8c carries the cache mount; see builders/rbuild.sh).
# Needs root for apt-get (hyperfine, time, busybox-static, pigz, skopeo, docker-registry,
# buildah, docker.io are installed when missing) and to start dockerd when none answers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=$(dirname "$here")
usage() { sed -n 6,25p "$0" >&2; exit 2; }

quick=0 only=all builders=rbuild,buildkit,buildah runs= tiny=0 work= keep=0 verbose=0
while [ $# -gt 0 ]; do
  case $1 in
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

ALL=(W1 W2 W3 W4 W5 W5z W6 W7 W8 W8c W10)
declare -A CONTEXT=([W1]=w1 [W2]=w2 [W3]=w2 [W4]=w2 [W5]=w5r [W5z]=w5z [W6]=w6 [W7]=w7 [W8]=w8 [W8c]=w8 [W10]=w10)
# cold: nothing cached; nochange: all cached, nothing changed; edit: all cached, one small file
# rewritten before each run; export: cold, build + archive timed; pull: base removed, pull timed;
# carried: a cold runner that gets the cache mounts of an earlier build (the builder's `stash`),
# restoring them timed (`carried`).
declare -A MODE=([W1]=cold [W2]=cold [W3]=nochange [W4]=edit [W5]=export [W5z]=export [W6]=cold [W7]=pull
                 [W8]=edit [W8c]=carried [W10]=seeded)
# seeded (W10): the builder's `seed` builds once and leaves its cache in the local registry
# (untimed); each timed run is a cold runner building from that cache (`fromcache`).
# the file that edit mode rewrites, per context
declare -A EDIT=([w2]=d00/s0/f00000.bin [w8]=src/d00/s0/f00000.bin)
if [ "$only" = all ]; then workloads=("${ALL[@]}") layer=1
else
  IFS=, read -ra workloads <<<"${only^^}"; layer=0
  for i in "${!workloads[@]}"; do
    w=${workloads[$i]/W5Z/W5z}; w=${w/W8C/W8c}; workloads[$i]=$w
    [ "$w" = LAYER ] && { layer=1; unset "workloads[$i]"; continue; }
    [ -n "${CONTEXT[$w]:-}" ] || { echo "unknown workload $w" >&2; usage; }
  done
  workloads=("${workloads[@]}")
fi
for w in "${workloads[@]}"; do case $w in W5|W5z) layer=1 ;; esac; done
IFS=, read -ra builders <<<"$builders"
for b in "${builders[@]}"; do [ -x "$here/builders/$b.sh" ] || { echo "no builder bench/builders/$b.sh" >&2; exit 2; }; done
has() { local x; for x in "${@:2}"; do [ "$x" = "$1" ] && return 0; done; return 1; }
if [ -z "$runs" ]; then runs=$([ $quick = 1 ] && echo 1 || echo 5); fi
warmup=$([ $quick = 1 ] && echo 0 || echo 1)
if [ $tiny = 1 ]; then small=1000 big=8 w5=16 pull=4 w8files=500 w8mib=8
else small=20000 big=250 w5=512 pull=96 w8files=5000 w8mib=100; fi

log() { printf '== %s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---- tools ------------------------------------------------------------------------------------
declare -A PKG=([hyperfine]=hyperfine [/usr/bin/time]=time [busybox]=busybox-static [pigz]=pigz
                [python3]=python3 [skopeo]=skopeo [docker-registry]=docker-registry
                [buildah]=buildah [dockerd]=docker.io)
want=(hyperfine /usr/bin/time busybox pigz python3)
has W7 "${workloads[@]}" && want+=(skopeo docker-registry)
has W10 "${workloads[@]}" && want+=(docker-registry)
has buildah "${builders[@]}" && want+=(buildah)
has buildkit "${builders[@]}" && want+=(dockerd)
missing=()
for t in "${want[@]}"; do command -v "$t" >/dev/null || missing+=("${PKG[$t]}"); done
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
dockerd_pid= registry_pid= started_at=$(date +%s)
cleanup() {
  set +e
  for b in "${builders[@]}"; do
    [ -d "$WORK/state/$b" ] && STATE=$WORK/state/$b "$here/builders/$b.sh" cleanup >/dev/null 2>&1
  done
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null; fi
  if [ -n "$dockerd_pid" ]; then
    log "stopping the dockerd this run started ($dockerd_pid)"
    kill "$dockerd_pid"; for _ in $(seq 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
  fi
  if [ $keep = 0 ]; then rm -rf "$WORK"; else log "work dir kept: $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- Docker daemon (BuildKit) -----------------------------------------------------------------
if has buildkit "${builders[@]}" && ! "$DOCKER" info >/dev/null 2>&1; then
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
"$here/make-workloads.sh" "$WORK" "$small" "$big" "$w5" "$w8files" "$w8mib" >&2

# ---- local registry for W7 --------------------------------------------------------------------
PULL_REF= W10_REF=
if has W7 "${workloads[@]}" || has W10 "${workloads[@]}"; then
  port=${W7_PORT:-5077}
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  mkdir -p "$WORK/registry/data"
  printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$WORK/registry/data" "$port" > "$WORK/registry/config.yml"
  setsid docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 </dev/null &
  registry_pid=$!
  for _ in $(seq 40); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.25; done
  if has W7 "${workloads[@]}"; then
    PULL_REF=127.0.0.1:$port/rbuild-bench/pull:1
    skopeo copy -q --dest-tls-verify=false "oci-archive:$BASES/pull.oci.tar" "docker://$PULL_REF" >&2
    printf 'FROM %s\n' "$PULL_REF" > "$WORK/w7/Dockerfile"
  fi
  W10_REF=127.0.0.1:$port/rbuild-bench/w10   # each builder's cache: $W10_REF-BUILDER:cache
fi
export PULL_REF W10_REF

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
  echo "disk: $(df -hT "$WORK" | awk 'NR == 2 {print $1, $2, $3}')"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "hyperfine: $(hyperfine --version)"
  echo "rbuild: $("$RBUILD" --version 2>&1 | head -1) ($RBUILD)"
  echo "runs per cell: $runs after $warmup warm-up; sizes: w2 $small files + $big MiB, W5 $w5 MiB, W7 $pull MiB payload, W8 cache mount $w8files files + $w8mib MiB"
  if has W8c "${workloads[@]}"; then echo "rbuild's W8c carries the cache mount by: ${RBUILD_W8C:-import}"; fi
} > "$res/machine.txt"
printf '{"small_files": %d, "big_mib": %d, "w5_mib": %d, "pull_mib": %d, "w8_files": %d, "w8_mib": %d, "runs": %d, "warmup": %d}\n' \
  "$small" "$big" "$w5" "$pull" "$w8files" "$w8mib" "$runs" "$warmup" > "$res/params.json"

# ---- builders ---------------------------------------------------------------------------------
ready=()
for b in "${builders[@]}"; do
  export STATE=$WORK/state/$b
  mkdir -p "$STATE"
  if "$here/builders/$b.sh" setup >"$res/setup-$b.log" 2>&1; then
    ready+=("$b")
    echo "$b: $("$here/builders/$b.sh" version 2>&1 | head -1)" >> "$res/machine.txt"
  else
    log "$b: setup failed, see $res/setup-$b.log"
    echo "$b: setup failed" >> "$res/machine.txt"
  fi
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

bench_cell() { # WORKLOAD BUILDER
  local w=$1 b=$2 id=$1-$2 B mode=${MODE[$1]} verb=build prep=() sampler= timer
  B=$(q "$here/builders/$b.sh")
  export STATE=$WORK/state/$b CTX=$WORK/${CONTEXT[$w]} TAG=rbuild-bench/${CONTEXT[$w]}-$b:latest
  export OUT=$STATE/out.tar
  local logf=$res/$id.log sink
  sink=$([ $verbose = 1 ] && echo "2>&1 | tee -a $(q "$logf")" || echo ">>$(q "$logf") 2>&1")
  case $mode in
    cold)   prep=(--prepare "$B cold $sink") ;;
    export) prep=(--prepare "$B cold $sink; rm -f $(q "$OUT")"); verb=export ;;
    pull)   prep=(--prepare "$B unpull $sink && $B cold $sink"); verb=pull ;;
    nochange|edit)
      local ready=$STATE/${CONTEXT[$w]}.ready   # W2 left w2 built, unless W2 was not run just before
      if [ ! -f "$ready" ]; then
        "$B" cold >>"$logf" 2>&1 && "$B" build >>"$logf" 2>&1 && touch "$ready" || return 1
      fi
      if [ $mode = edit ]; then
        prep=(--prepare "$B untag $sink; date +%s%N | dd of=$(q "$CTX/${EDIT[${CONTEXT[$w]}]}") conv=notrunc status=none")
      fi ;;
    seeded)    # W10: one build leaves the builder's cache in the registry; each run: a cold runner
      "$B" cold >>"$logf" 2>&1 && "$B" seed >>"$logf" 2>&1 || return 1
      prep=(--prepare "$B cold $sink"); verb=fromcache ;;
    carried)   # one build fills the cache mounts, the builder puts them aside; each run: a cold runner
      "$B" cold >>"$logf" 2>&1 && "$B" build >>"$logf" 2>&1 && "$B" stash >>"$logf" 2>&1 || return 1
      prep=(--prepare "$B runner $sink"); verb=carried ;;
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
  [ $ok = 0 ] && [ "$w" = W2 ] && touch "$STATE/w2.ready"
  return $ok
}

: > "$res/cells.tsv"
for w in "${workloads[@]}"; do
  for b in "${builders[@]}"; do
    if ! has "$b" "${ready[@]}"; then status=setup-failed
    else
      log "$w $b (${MODE[$w]})"
      if bench_cell "$w" "$b"; then status=ok
      else status=failed; log "$w $b failed; last lines of $res/$w-$b.log:"; tail -n 5 "$res/$w-$b.log" >&2 || true
      fi
      # Leave nothing behind that the next cell could profit from, except W2's build for W3/W4.
      export STATE=$WORK/state/$b TAG=rbuild-bench/${CONTEXT[$w]}-$b:latest
      case $w in W2|W3|W4) ;; *) "$here/builders/$b.sh" cold >/dev/null 2>&1 || true ;; esac
      [ "$w" != W7 ] || "$here/builders/$b.sh" unpull >/dev/null 2>&1 || true
      rm -f "$WORK/state/$b/out.tar" "$WORK/state/$b/stash.tar"
    fi
    printf '%s\t%s\t%s\n' "$w" "$b" "$status" >> "$res/cells.tsv"
  done
done

# ---- W7 reference: the same pull by skopeo into an OCI layout ---------------------------------
# What a pull costs without a builder around it: download, digest checks, blobs written. rbuild's
# W7 row also unpacks the layer into a snapshot, which skopeo does not.
if has W7 "${workloads[@]}" && has rbuild "${ready[@]}"; then
  log "W7 skopeo (reference: skopeo copy docker://… oci:…)"
  dest=$WORK/skopeo-pull
  if hyperfine --shell=bash --style basic --runs "$runs" --warmup "$warmup" -n W7-skopeo \
       --prepare "rm -rf $(q "$dest")" --export-json "$res/W7-skopeo.json" \
       "/usr/bin/time -a -o $(q "$res/W7-skopeo.rss") -f %M skopeo copy -q --src-tls-verify=false docker://$PULL_REF oci:$(q "$dest"):pull >>$(q "$res/W7-skopeo.log") 2>&1" >&2; then
    printf 'W7\tskopeo\tok\n' >> "$res/cells.tsv"
  else
    printf 'W7\tskopeo\tfailed\n' >> "$res/cells.tsv"
  fi
  rm -rf "$dest"
fi

# ---- W10 reference: rbuild's own cold build of the same context, no cache ---------------------
if has W10 "${workloads[@]}" && has rbuild "${ready[@]}"; then
  log "W10 rbuild-cold (reference: rbuild's cold build without --cache-from)"
  export STATE=$WORK/state/rbuild CTX=$WORK/w10 TAG=rbuild-bench/w10-rbuild:latest
  B=$(q "$here/builders/rbuild.sh")
  if hyperfine --shell=bash --style basic --runs "$runs" --warmup "$warmup" -n W10-rbuild-cold \
       --prepare "$B cold >>$(q "$res/W10-rbuild-cold.log") 2>&1" --export-json "$res/W10-rbuild-cold.json" \
       "/usr/bin/time -a -o $(q "$res/W10-rbuild-cold.rss") -f %M $B build >>$(q "$res/W10-rbuild-cold.log") 2>&1" >&2; then
    printf 'W10\trbuild-cold\tok\n' >> "$res/cells.tsv"
  else
    printf 'W10\trbuild-cold\tfailed\n' >> "$res/cells.tsv"
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
log "results: $res"
