#!/usr/bin/env bash
# Runs the whole test suite against real servers: installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
