#!/usr/bin/env bash
# `cssc check` against `xmllint --noout` on the same large document, side by side in
# one hyperfine run. Needs python3, hyperfine and xmllint (Debian: hyperfine libxml2-utils).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p csc-compiler --bin cssc
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/gen_large.py "${1:-20000}" "${2:-8}" > "$work/large.xml"
echo "document: $(stat -c %s "$work/large.xml") bytes; machine: $(nproc) cores, $(uname -m)"
target/release/cssc check "$work/large.xml"
hyperfine -N --warmup 3 --runs "${RUNS:-10}" --export-markdown "$work/result.md" \
  "target/release/cssc check $work/large.xml" \
  "xmllint --noout $work/large.xml"
cat "$work/result.md"
/usr/bin/time -f "cssc check peak RSS: %M KiB" target/release/cssc check "$work/large.xml" >/dev/null
/usr/bin/time -f "xmllint --noout peak RSS: %M KiB" xmllint --noout "$work/large.xml"
