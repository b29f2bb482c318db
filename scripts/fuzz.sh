#!/usr/bin/env bash
# Fuzzes the parts of the pod that read untrusted bytes (fuzz/README.md): each libFuzzer
# target for a fixed time, starting from its seed corpus and every input that ever failed.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#   FUZZ_RUNS=N [FUZZ_SEED=S] scripts/fuzz.sh [TARGET...]  (a repeatable check)
#
# The first form explores: a random seed, and the scratch corpus of every earlier run, so each
# run reaches further and none repeats another. The second is what the test command runs: N
# inputs per target from seed S (default 1), starting from the curated corpus and the
# regressions alone, so the same commit gives the same inputs and the same verdict on every
# machine (a CI run fails on what the commit did, not on the luck of the draw; new inputs
# found by exploring are fixed and kept in fuzz/regressions/ before they land).
#
# Needs the nightly toolchain (sanitizer flags); installs cargo-fuzz when it is missing. The
# sanitizer build of every dependency (librdkafka included) takes minutes, so its target
# directory lives in the machine's cache (DISTRISOCKS_FUZZ_TARGET, default
# ~/.cache/distrisocks/fuzz-target), shared by clean clones as the broker's build is; cargo
# rebuilds what changed. New inputs the fuzzer finds go to a scratch corpus there, never into
# the curated fuzz/corpus/. A crash is copied into fuzz/regressions/<target>/, where the stable test
# `tests/fuzz_regressions.rs` replays it on every `cargo test`, and the script fails.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export PATH="$HOME/.cargo/bin:$PATH"

runs=${FUZZ_RUNS:-}
if [ -z "$runs" ]; then
    seconds=${1:-60}
    shift || true
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(client_frame http_head jwt ws_frames)
fi

if ! cargo +nightly --version > /dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal || {
        echo "fuzz.sh: the nightly toolchain is missing and could not be installed" >&2
        exit 2
    }
fi
if ! cargo fuzz --version > /dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

target_dir="${DISTRISOCKS_FUZZ_TARGET:-${DISTRISOCKS_CACHE:-$HOME/.cache/distrisocks}/fuzz-target}"
mkdir -p "$target_dir"
started=$(date +%s)
cargo +nightly fuzz build -O --target-dir "$target_dir"
echo "fuzz.sh: built in $(( $(date +%s) - started )) s" >&2

failed=()
for t in "${targets[@]}"; do
    scratch="$target_dir/scratch-corpus/$t"
    artifacts="$target_dir/artifacts/$t"
    if [ -n "$runs" ]; then
        # Fresh each time: what a check finds must not change the next check's inputs.
        scratch="$target_dir/check-corpus/$t"
        rm -rf "$scratch"
        bound=(-runs="$runs" -seed="${FUZZ_SEED:-1}")
        what="$runs inputs from seed ${FUZZ_SEED:-1}"
    else
        bound=(-max_total_time="$seconds")
        what="$seconds s"
    fi
    mkdir -p "$scratch" "$artifacts" "corpus/$t" "regressions/$t"
    rm -f "$artifacts"/crash-* "$artifacts"/oom-* "$artifacts"/timeout-*
    log="$target_dir/fuzz-$t.log"
    echo "fuzz.sh: $t, $what (log: $log)" >&2
    # The scratch corpus comes first: libFuzzer writes what it finds into the first directory.
    if cargo +nightly fuzz run -O --target-dir "$target_dir" "$t" "$scratch" "corpus/$t" "regressions/$t" -- \
        "${bound[@]}" -artifact_prefix="$artifacts/" -print_final_stats=1 \
        > "$log" 2>&1; then
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log" \
            | sed "s/^/fuzz.sh: $t /" >&2 || true
    else
        for f in "$artifacts"/*; do
            [ -f "$f" ] || continue
            cp "$f" "regressions/$t/"
            echo "fuzz.sh: $t failed on fuzz/regressions/$t/$(basename "$f")" >&2
        done
        # The panic's message, then the end of the log (the input and the trace).
        grep -m3 -A3 "panicked at" "$log" >&2 || true
        tail -40 "$log" >&2
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: failing targets: ${failed[*]}; keep the inputs in fuzz/regressions/" >&2
    exit 1
fi
echo "fuzz.sh: no failure in ${targets[*]} ($what each)" >&2
