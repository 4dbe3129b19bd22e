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
# Usage: images/agent-registry/build.sh [--no-image | --binary-only]
#   --no-image     steps 1 and 2 only.
#   --binary-only  step 1 only, then prints the binary's path on stdout (its last line); the
#                  build context is not touched. scripts/test.sh uses it for the image tests.
# Environment: CARGO_TARGET_DIR (default target), TAG (default agent-registry:1.0.0),
#              AOS (default target/release/aos), AOS_DATA_DIR (the data dir whose image store
#              receives the image; default: aos's own default).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

target=x86_64-unknown-linux-musl
tag="${TAG:-agent-registry:1.0.0}"
aos="${AOS:-target/release/aos}"
build_image=1
binary_only=0
for arg in "$@"; do
  case "$arg" in
    --no-image) build_image=0 ;;
    --binary-only) build_image=0; binary_only=1 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
case "$bin" in
  /*) ;;
  *) bin="$root/$bin" ;;
esac

# A scratch image has no dynamic loader: refuse a binary that needs one.
check_static() {
  if command -v readelf >/dev/null 2>&1 && readelf -l "$1" | grep -q 'Requesting program interpreter'; then
    say "error: $1 is dynamically linked"
    exit 1
  fi
}

if [ "$binary_only" = 1 ]; then
  check_static "$bin"
  say "static binary: $bin"
  echo "$bin"
  exit 0
fi

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

check_static "$context/agent-registry"
say "static binary: $context/agent-registry ($(du -h "$context/agent-registry" | cut -f1))"

if [ "$build_image" = 0 ]; then
  exit 0
fi
data_dir_args=()
if [ -n "${AOS_DATA_DIR:-}" ]; then
  data_dir_args=(--data-dir "$AOS_DATA_DIR")
fi
if [ -x "$aos" ] && "$aos" image build --help >/dev/null 2>&1; then
  say "$aos image ${data_dir_args[*]} build -t $tag images/agent-registry"
  "$aos" image "${data_dir_args[@]}" build -t "$tag" images/agent-registry
else
  say "$aos with 'image build' not found: skipping the image (build aos, then rerun this script)"
fi
