#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS seconds each (default 30), one
# after the other, and prints how many inputs each ran. Fails on the first
# crash or failed assertion (libFuzzer saves the input under
# fuzz/artifacts/<target>/). CI runs it with the default; for a long
# campaign: scripts/fuzz.sh 600, or scripts/fuzz.sh 600 ingress egress.
#
# Installs cargo-fuzz if it is missing. cargo-fuzz needs nightly compiler
# flags (-Zsanitizer=address); RUSTC_BOOTSTRAP=1 allows them on stable.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(ingress egress frag config control etcd)
fi

export RUSTC_BOOTSTRAP=1
# A target directory of its own, so that fuzzing never takes the lock of
# the main build.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/fuzz/target}

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi

cargo fuzz build
total=0
summary=""
for t in "${targets[@]}"; do
  extra=()
  if [ "$t" = config ]; then
    extra=(-dict=fuzz/config.dict)
  fi
  log=$(mktemp)
  echo "fuzz: $t for ${seconds}s"
  if ! cargo fuzz run "$t" -- -max_total_time="$seconds" -print_final_stats=1 "${extra[@]}" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: target $t FAILED (input saved under fuzz/artifacts/$t/)" >&2
    rm -f "$log"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rm -f "$log"
  runs=${runs:-0}
  total=$((total + runs))
  summary+=$(printf '%-8s %12s runs in %ss\n' "$t" "$runs" "$seconds")$'\n'
done
printf '%s' "$summary"
printf '%-8s %12s runs\n' total "$total"
