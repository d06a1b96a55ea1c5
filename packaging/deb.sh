#!/usr/bin/env bash
# The Debian package of cssc: `packaging/deb.sh [OUT_DIR]` builds cssc in release,
# writes its completions and man page beside it (from cssc itself), and runs
# `cargo deb` (cargo install cargo-deb). Prints the package's path.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/debian}"
cargo build -q --release --locked -p csc-compiler --bin cssc
# Where cargo builds (CARGO_TARGET_DIR when set): cargo-deb reads the assets there.
release="${CARGO_TARGET_DIR:-target}/release"
"$release/cssc" completions bash > "$release/cssc.bash"
"$release/cssc" completions zsh > "$release/_cssc"
"$release/cssc" completions fish > "$release/cssc.fish"
"$release/cssc" man | gzip -9n > "$release/cssc.1.gz"
mkdir -p "$out"
cargo deb -q --locked -p csc-compiler --no-build --output "$out"
