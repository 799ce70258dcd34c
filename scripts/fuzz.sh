#!/usr/bin/env bash
# Runs rbuild's cargo-fuzz targets (tests/fuzz) one after another, each in a
# single libFuzzer process.
#
#   scripts/fuzz.sh [TARGET...] [--time SECONDS]
#
# TARGET defaults to every target in tests/fuzz/Cargo.toml; SECONDS (per
# target) to 600. Each target starts from its seeds (tests/fuzz/seeds/TARGET,
# kept in git) copied into a working corpus, tests/fuzz/corpus/TARGET, which
# grows across runs and is not committed. Crashes, timeouts and OOMs go to
# tests/fuzz/artifacts/TARGET/, libFuzzer's output to tests/fuzz/logs/.
#
# Needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz).
# Builds go to $CARGO_TARGET_DIR when set, else tests/fuzz/target. Extra
# libFuzzer flags can be given in $FUZZ_FLAGS (e.g. "-max_len=4096"). To leave
# CPU to other work, run it under nice: nice -n 10 scripts/fuzz.sh
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fuzz_dir="$repo/tests/fuzz"
seconds=600
targets=()

while (($#)); do
    case "$1" in
        --time)
            [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --time needs a number of seconds" >&2; exit 2; }
            seconds=$2
            shift 2
            ;;
        --time=*)
            seconds=${1#--time=}
            [[ $seconds =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --time needs a number of seconds" >&2; exit 2; }
            shift
            ;;
        -h|--help)
            sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "fuzz.sh: unknown option $1" >&2
            exit 2
            ;;
        *)
            targets+=("$1")
            shift
            ;;
    esac
done

all_targets=$(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' "$fuzz_dir/Cargo.toml" | grep -vx rbuild-fuzz || true)
if ((${#targets[@]} == 0)); then
    read -r -a targets <<<"$(echo $all_targets)"
fi
for target in "${targets[@]}"; do
    if ! grep -qx "$target" <<<"$all_targets"; then
        echo "fuzz.sh: no fuzz target $target (targets: $(echo $all_targets))" >&2
        exit 2
    fi
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$fuzz_dir/target}
cargo_fuzz=(cargo +nightly fuzz)
cd "$repo"
"${cargo_fuzz[@]}" build --fuzz-dir "$fuzz_dir"

mkdir -p "$fuzz_dir/logs"
summary=()
failed=0
for target in "${targets[@]}"; do
    corpus="$fuzz_dir/corpus/$target"
    artifacts="$fuzz_dir/artifacts/$target"
    log="$fuzz_dir/logs/$target.log"
    mkdir -p "$corpus" "$artifacts"
    if [[ -d $fuzz_dir/seeds/$target ]]; then
        cp -n "$fuzz_dir/seeds/$target"/* "$corpus"/ 2>/dev/null || true
    fi
    before=$(find "$artifacts" -type f | wc -l)
    echo "== $target: fuzzing for ${seconds}s (log: ${log#"$repo"/})"
    start=$(date +%s)
    status=0
    # shellcheck disable=SC2086 # FUZZ_FLAGS is a list of flags
    "${cargo_fuzz[@]}" run --fuzz-dir "$fuzz_dir" "$target" "$corpus" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=25 -rss_limit_mb=2048 \
        ${FUZZ_FLAGS:-} >"$log" 2>&1 || status=$?
    elapsed=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    after=$(find "$artifacts" -type f | wc -l)
    if ((status != 0 || after > before)); then
        found="CRASH (exit $status; $((after - before)) new in ${artifacts#"$repo"/})"
        grep -m1 -E '^==[0-9]+== ?ERROR|panicked at|^SUMMARY' "$log" | sed 's/^/    /' || true
        failed=1
    else
        found="no crash"
    fi
    line=$(printf '%-14s %6ss %14s execs  %s' "$target" "$elapsed" "${execs:-?}" "$found")
    echo "$line"
    summary+=("$line")
done

echo
echo "target           time      executions  result"
printf '%s\n' "${summary[@]}"
exit "$failed"
