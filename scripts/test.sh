#!/usr/bin/env bash
# Runs the whole aos test suite: installs what the tests need (as root, from Debian's
# packages), then runs every crate's tests with cargo-nextest.
#
# Usage: scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/prereqs.sh
source scripts/prereqs.sh
install_test_prereqs
# The static agent-registry binary the image tests put in their build context.
build_test_agent_registry

cargo nextest run --workspace --profile ci --no-fail-fast "$@"
