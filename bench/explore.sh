#!/usr/bin/env bash
# The fault explorer over many seeds: `bench/explore.sh FROM TO [STEPS]` runs the
# schedules of seeds FROM..TO (STEPS steps each, default 8) on real
# qemu-storage-daemons, goes on past a violation (shrink one with
# CSSC_EXPLORE=SEED..SEED+1 cargo test --test explorer fixed_seeds -- --nocapture), and
# prints each seed as it starts, each violation, and how many schedules held every
# invariant. qemu-utils needed.
set -euo pipefail
cd "$(dirname "$0")/.."
from=${1:-1}
to=${2:-101}
steps=${3:-8}
echo "machine: $(nproc) cores, $(uname -m), $(qemu-storage-daemon --version | head -1)"
CSSC_EXPLORE="$from..$to" CSSC_EXPLORE_STEPS="$steps" CSSC_EXPLORE_ALL=1 \
  cargo test -q --test explorer fixed_seeds_hold_every_invariant -- --nocapture \
  | grep --line-buffered -E '^(seed [0-9]+: (step|\[)|explorer:)' || true
