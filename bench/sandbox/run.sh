#!/usr/bin/env bash
# Container start-to-exit of /bin/true in one busybox bundle: aos-sandbox vs `runc run`.
#
#   bench/sandbox/run.sh [RUNS]        (root; RUNS defaults to 30)
#
# Builds the single-threaded runner `aos-sandbox-run` (release), makes a busybox-static root
# file system, and times RUNS sequential runs of each runtime, each from process start to
# container exit and removal. Prints best and median per runtime and the ratio of medians
# (goal: aos <= 1.2x runc). aos runs twice: with runc's default spec's settings (default
# capabilities, no seccomp, root) and hardened (uid 1001, no capabilities, no_new_privs,
# RuntimeDefault seccomp, read-only root).
set -euo pipefail

RUNS=${1:-30}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
command -v busybox >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >/dev/null
command -v runc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y runc >/dev/null

(cd "$REPO" && cargo build --release -q -p aos-sandbox --bin aos-sandbox-run)
RUNNER=$CARGO_TARGET_DIR/release/aos-sandbox-run

WORK=$(mktemp -d /tmp/aos-sandbox-bench.XXXXXX)
cleanup() { rm -rf "$WORK"; for c in cpu cpuacct memory pids; do rmdir /sys/fs/cgroup/$c/aos-bench 2>/dev/null || true; done; }
trap cleanup EXIT

BUNDLE=$WORK/bundle
ROOT=$BUNDLE/rootfs
mkdir -p "$ROOT"/{bin,proc,dev,sys,tmp,etc,root}
cp "$(command -v busybox)" "$ROOT/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$ROOT/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1001:1001::/tmp:/bin/sh\n' > "$ROOT/etc/passwd"

# runc: its default spec, running /bin/true.
(cd "$BUNDLE" && runc spec)
python3 - "$BUNDLE/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["root"] = {"path": "rootfs", "readonly": True}
json.dump(c, open(p, "w"), indent=1)
PY

spec() { # $1 id  $2 mode(plain|hardened)
  python3 - "$1" "$2" "$WORK" "$ROOT" <<'PY'
import json, sys
cid, mode, work, root = sys.argv[1:5]
caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]  # runc spec's default set
spec = {"id": cid, "bundleDir": f"{work}/aos-{mode}", "rootfs": {"dir": root}, "readonlyRoot": True,
        "process": {"args": ["/bin/true"], "uid": 0, "gid": 0, "capabilities": caps, "seccomp": "unconfined"},
        "cgroup": {"parent": "/aos-bench"}}
if mode == "hardened":
    spec["process"].update({"uid": 1001, "gid": 1001, "capabilities": [], "noNewPrivs": True, "seccomp": "runtimeDefault"})
print(json.dumps(spec))
PY
}
spec bench-plain plain > "$WORK/plain.json"
spec bench-hardened hardened > "$WORK/hardened.json"

now() { date +%s%N; }
time_runs() { # name command...
  local name=$1; shift
  local out=$WORK/$name.times
  : > "$out"
  "$@" >/dev/null 2>&1 || { echo "$name: warm-up run failed:" >&2; "$@" >&2 || true; exit 1; }
  for i in $(seq "$RUNS"); do
    local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now)
    echo $(( (t1 - t0) / 1000 )) >> "$out"
  done
  sort -n "$out" -o "$out"
  local best median
  best=$(head -1 "$out"); median=$(sed -n "$(( (RUNS + 1) / 2 ))p" "$out")
  printf '%-22s best %7.2f ms   median %7.2f ms   (%d runs)\n' "$name" "$(echo "$best/1000" | bc -l)" "$(echo "$median/1000" | bc -l)" "$RUNS"
  echo "$median" > "$WORK/$name.median"
}

runc_once() { runc run --bundle "$BUNDLE" "bench-runc-$$" ; }
aos_once() { "$RUNNER" "$WORK/$1.json" "$WORK/state"; }

echo "container start-to-exit of /bin/true, busybox bundle, $(nproc) cores, kernel $(uname -r)"
time_runs "runc run" runc_once
time_runs "aos-sandbox" aos_once plain
time_runs "aos-sandbox hardened" aos_once hardened
r=$(cat "$WORK/runc run.median"); a=$(cat "$WORK/aos-sandbox.median"); h=$(cat "$WORK/aos-sandbox hardened.median")
printf 'ratio aos/runc (median): %.2fx   hardened/runc: %.2fx   (goal <= 1.2x)\n' "$(echo "$a/$r" | bc -l)" "$(echo "$h/$r" | bc -l)"
