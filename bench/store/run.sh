#!/usr/bin/env bash
# Store benchmark: raw durable SQLite inserts vs SqliteStore::create (1 and 64
# writers, plain and encrypted) and list of 10,000 keys, on one disk, one run.
#
#   bench/store/run.sh                      # temp dir under $TMPDIR (or /tmp)
#   bench/store/run.sh --dir /var/lib/aos   # measure another disk
#   bench/store/run.sh --raw 2000 --creates 5000 --list-keys 10000
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet -p aos-store --example store_bench
exec "$CARGO_TARGET_DIR/release/examples/store_bench" "$@"
