#!/usr/bin/env bash
# Wall time of the quickstart demo, `make demo` after installation (target: <= 3 minutes on 2 CPU cores).
#
#   benchmarks/time_demo.sh                 # warm cache: the SmolLM2 base converted in ~/.cache/refinex is reused
#   benchmarks/time_demo.sh --cold          # a fresh machine: REFINEX_CACHE is an empty folder, so the one-time
#                                           # GGUF -> HF conversion of the base model is part of the time
#   benchmarks/time_demo.sh --no-install    # the environment is already set up another way: skip `make install`
#
# Anything else is passed to make, e.g. DEMO_ARGS="--model runs/my-refine-model" or PY=/path/to/python.
# Installation (`make install`) runs first and is not timed. The demo's own output (summary, report path,
# evaluation table) is printed as it runs; the last line is the wall time.
set -euo pipefail
cd "$(dirname "$0")/.."

install=1
cold=0
make_args=()
for arg in "$@"; do
  case "$arg" in
    --cold) cold=1 ;;
    --no-install) install=0 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) make_args+=("$arg") ;;
  esac
done

if [ "$install" = 1 ]; then
  make --no-print-directory install "${make_args[@]}"
fi

label="warm cache"
if [ "$cold" = 1 ]; then
  cache="$(mktemp -d)"
  trap 'rm -rf "$cache"' EXIT
  export REFINEX_CACHE="$cache"
  label="cold cache (REFINEX_CACHE=$cache, empty)"
fi

start=$(date +%s.%N)
make --no-print-directory demo-run "${make_args[@]}"
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" -v l="$label" -v n="$(getconf _NPROCESSORS_ONLN)" \
  'BEGIN { t = e - s; printf "make demo wall time (%s, %d CPU cores): %.1f s (%dm%04.1fs)\n", l, n, t, int(t / 60), t - 60 * int(t / 60) }'
