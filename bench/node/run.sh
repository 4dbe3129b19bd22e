#!/usr/bin/env bash
# Pod start latency (create → Ready) and node-agent memory per running pod, against a real
# `aos up` (release build, with its node agent: needs root), images already in its store.
#
#   bench/node/run.sh [aos-bench pods flags]      e.g. --runs 30 --batch 20 --batch-runs 5
#
# Installs busybox-static (the test image) and musl-tools (the static agent-registry) when
# missing, builds aos and aos-bench (release) and the static agent-registry binary, then runs
# `aos-bench pods`. See bench/node/README.md for what is measured and how.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench/node/run.sh: needs root (the node agent)" >&2; exit 1; }

# shellcheck source=scripts/prereqs.sh
source scripts/prereqs.sh
need_pkgs busybox-static musl-tools binutils
need_musl_target

target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p aos -p aos-bench
registry_args=()
if bin="$(images/agent-registry/build.sh --binary-only 2>/dev/null | tail -n 1)" && [ -x "$bin" ]; then
  registry_args=(--agent-registry-bin "$bin")
else
  echo "bench/node/run.sh: no static agent-registry binary: its case is skipped" >&2
fi
exec "$target/release/aos-bench" pods --aos "$target/release/aos" "${registry_args[@]}" "$@"
