#!/usr/bin/env bash
# API server benchmark: start-up, RSS, create throughput/latency against SQLite's raw durable
# insert rate on the same disk, list latency at 10,000 pods.
# Usage: bench/api/run.sh [aos-bench api flags]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p aos -p aos-bench
exec target/release/aos-bench api --aos target/release/aos "$@"
