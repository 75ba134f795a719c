#!/usr/bin/env bash
# Runs the whole test suite against real servers: installs what it needs first.
# --all-features: the examples' backends (zookeeper, etcd, kubernetes) are opt-in
# cargo features; the suite builds and runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo test --workspace --all-targets --all-features "$@"
cargo test --workspace --doc --all-features
