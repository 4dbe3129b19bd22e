# Installs the packages the tests and benchmarks use, when missing and when we are root.
# Sourced by scripts/test.sh and the bench scripts. Prints what it does; never fails the run
# for a package it cannot get (the tests that need it say they skipped, and why).

need_pkgs() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    echo "prereqs: not root; cannot install ${missing[*]} (tests needing them will skip)" >&2
    return 0
  fi
  echo "prereqs: installing ${missing[*]}" >&2
  if [ -z "${AOS_APT_UPDATED:-}" ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    export AOS_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || echo "prereqs: could not install ${missing[*]}" >&2
}

need_musl_target() {
  if ! rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl; then
    echo "prereqs: adding the x86_64-unknown-linux-musl target" >&2
    rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 \
      || echo "prereqs: could not add the musl target" >&2
  fi
}

install_test_prereqs() {
  need_pkgs skopeo busybox-static musl-tools binutils
  need_musl_target
}

# Builds the static (musl) agent-registry binary once, for the image tests, and exports its path
# as AOS_TEST_AGENT_REGISTRY_BIN. The build is cargo's, in the normal target dir
# (target/x86_64-unknown-linux-musl/release/agent-registry), so a rerun costs a second. A failed
# build does not fail the run: the tests that need the binary print that they skipped, and why.
build_test_agent_registry() {
  local bin
  if bin="$(images/agent-registry/build.sh --binary-only | tail -n 1)" && [ -x "$bin" ]; then
    export AOS_TEST_AGENT_REGISTRY_BIN="$bin"
    echo "prereqs: AOS_TEST_AGENT_REGISTRY_BIN=$bin" >&2
  else
    unset AOS_TEST_AGENT_REGISTRY_BIN
    echo "prereqs: could not build the static agent-registry binary (the image tests will skip)" >&2
  fi
}
