#!/usr/bin/env bash
# Builds the agent-registry image.
#
# 1. Compiles the static binary: cargo build --release --target x86_64-unknown-linux-musl.
#    The bundled SQLite is C, compiled for musl with musl-gcc (Debian's musl-tools): when it is
#    missing this script installs it with apt-get (as root), and says so. The host's gcc with
#    glibc headers is not a substitute: it links glibc-only symbols (fcntl64) that musl lacks.
# 2. Strips it and copies it into the build context: images/agent-registry/context/agent-registry.
# 3. If target/release/aos exists and has `aos image build`, builds agent-registry:1.0.0 with it.
#
# Usage: images/agent-registry/build.sh [--no-image]
# Environment: CARGO_TARGET_DIR (default target), TAG (default agent-registry:1.0.0),
#              AOS (default target/release/aos); aos itself reads AOS_DATA_DIR.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

target=x86_64-unknown-linux-musl
tag="${TAG:-agent-registry:1.0.0}"
aos="${AOS:-target/release/aos}"
build_image=1
for arg in "$@"; do
  case "$arg" in
    --no-image) build_image=0 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

say() { echo "build.sh: $*" >&2; }

# The Rust standard library for musl.
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  say "adding the rust target $target"
  rustup target add "$target"
fi

# A C compiler for musl, for the bundled SQLite.
if ! command -v musl-gcc >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "musl-gcc not found: installing Debian's musl-tools (apt-get install -y musl-tools)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null 2>&1
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null
    }
  else
    say "musl-gcc not found: install musl-tools (sudo apt-get install -y musl-tools) and rerun"
    exit 1
  fi
fi
export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-musl-gcc}"

# The version /api/v1/agent-registry/instance reports: the image tag's.
case "$tag" in
  *:*) tag_version="${tag##*:}" ;;
  *) tag_version=latest ;;
esac
export AGENT_REGISTRY_VERSION="${AGENT_REGISTRY_VERSION:-$tag_version}"

say "cargo build --release --target $target -p agent-registry (version $AGENT_REGISTRY_VERSION)"
cargo build --release --target "$target" -p agent-registry

bin="${CARGO_TARGET_DIR:-$root/target}/$target/release/agent-registry"
context="$here/context"
mkdir -p "$context"
# Copy then strip the copy: the release profile keeps line tables for backtraces, which the image
# does not need.
install -m 0755 "$bin" "$context/agent-registry.tmp"
if command -v strip >/dev/null 2>&1; then
  strip --strip-all "$context/agent-registry.tmp"
else
  say "strip not found (binutils): the image binary keeps its debug line tables"
fi
mv -f "$context/agent-registry.tmp" "$context/agent-registry"

# A scratch image has no dynamic loader: refuse a binary that needs one.
if command -v readelf >/dev/null 2>&1 && readelf -l "$context/agent-registry" | grep -q 'Requesting program interpreter'; then
  say "error: $context/agent-registry is dynamically linked"
  exit 1
fi
say "static binary: $context/agent-registry ($(du -h "$context/agent-registry" | cut -f1))"

if [ "$build_image" = 0 ]; then
  exit 0
fi
if [ -x "$aos" ] && "$aos" image build --help >/dev/null 2>&1; then
  say "$aos image build -t $tag images/agent-registry"
  "$aos" image build -t "$tag" images/agent-registry
else
  say "$aos with 'image build' not found: skipping the image (build aos, then rerun this script)"
fi
