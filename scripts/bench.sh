#!/usr/bin/env bash
# clerk against Playwright on the same work, in one invocation (see examples/bench_peer.rs).
# Installs playwright-core from npm into bench/ (it drives the Debian Chromium clerk uses;
# no browser is downloaded), builds in release mode and runs the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if ! command -v node >/dev/null 2>&1; then
  echo "node not found: the benchmark's baseline needs Node.js and npm" >&2
  exit 1
fi
(cd bench && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent)
cargo run --release --example bench_peer -- "${@:-20}"
