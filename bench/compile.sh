#!/usr/bin/env bash
# `cssc compile`: cold (empty cache) and warm (document changed, runtime cached)
# compile times, binary size, and `cssc generate` on the 20,000 x 8 document.
# Needs hyperfine and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p csc-compiler --bin cssc
cssc=$PWD/target/release/cssc
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CSSC_CACHE_DIR=$work/cache
cp solutions/cppc.xml "$work/cppc.xml"
echo "machine: $(nproc) cores, $(uname -m)"

start=$(date +%s.%N)
"$cssc" compile "$work/cppc.xml" -o "$work/cppc-bin"
echo "cold compile (empty cache, runtime and its dependencies built): $(echo "$(date +%s.%N) - $start" | bc) s"
echo "binary size: $(stat -c %s "$work/cppc-bin") bytes"

# Warm: each run first changes the document (a new DESCRIPTION), so the generated
# module really changes and cargo rebuilds it; the runtime stays cached.
hyperfine -N --runs "${RUNS:-10}" --export-markdown "$work/warm.md" \
  --prepare "python3 bench/touch_description.py $work/cppc.xml" \
  "$cssc compile $work/cppc.xml -o $work/cppc-bin"
hyperfine -N --runs "${RUNS:-10}" --export-markdown "$work/unchanged.md" \
  "$cssc compile $work/cppc.xml -o $work/cppc-bin"
cat "$work/warm.md" "$work/unchanged.md"

python3 bench/gen_large.py > "$work/large.xml"
hyperfine -N --warmup 1 --runs 5 --export-markdown "$work/generate.md" \
  --prepare "rm -f $work/large.rs" \
  "$cssc generate $work/large.xml -o $work/large.rs"
cat "$work/generate.md"
echo "generated module: $(stat -c %s "$work/large.rs") bytes, $(wc -l < "$work/large.rs") lines"

# Copy sets are data (one JSON literal), not code: the 20,000-copy-set document
# compiled with the runtime already built, then warm after a change, and its size.
sed -i 's|<SESSION name="large-20000x8">|<SESSION name="large-20000x8">\n  <DESCRIPTION>x</DESCRIPTION>|' "$work/large.xml"
/usr/bin/time -f "large: first compile (runtime cached) %e s, peak %M KB" "$cssc" compile "$work/large.xml" -o "$work/large-bin"
for _ in 1 2 3; do
  python3 bench/touch_description.py "$work/large.xml"
  /usr/bin/time -f "large: warm compile, document changed %e s, peak %M KB" "$cssc" compile "$work/large.xml" -o "$work/large-bin"
done
echo "large: binary size $(stat -c %s "$work/large-bin") bytes"

# A new solution (a name never compiled before: a new crate in the shared cache),
# with the runtime already built: three of them.
for n in 1 2 3; do
  sed "s|<SESSION name=\"three-site-cascade\">|<SESSION name=\"new-solution-$n\">|" solutions/three-site-cascade.xml > "$work/new-$n.xml"
  /usr/bin/time -f "new small solution $n: %e s" "$cssc" compile "$work/new-$n.xml" -o "$work/new-$n-bin"
done
echo "new small solution: binary size $(stat -c %s "$work/new-1-bin") bytes"
