#!/usr/bin/env bash
# Benchmarks aos's image store.
#
# (a) `aos image build` of a Dockerfile shaped like agent-registry's: a ~10 MB static binary
#     FROM scratch, with labels, USER, HEALTHCHECK and ENTRYPOINT (cold store, then warm).
# (b) A 200 MB docker-archive of incompressible layers: `aos image import` against
#     `skopeo copy docker-archive:X oci:DIR:tag`, best of 3 each, into a fresh directory each
#     time, and the ratio (goal: aos no slower than skopeo).
#
# Usage: bench/image/run.sh [--size-mb N]
# Environment: CARGO_TARGET_DIR (default target), AOS (an aos binary with
# `aos image`, given its data directory through AOS_DATA_DIR; default: the aos-image example
# binary, built here in release mode).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
size_mb=200
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mb) size_mb="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

say() { echo "bench/image: $*" >&2; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

if [ -n "${AOS:-}" ]; then
  aos=("$AOS")
  image_cmd() { local d="$1"; shift; AOS_DATA_DIR="$d" "${aos[@]}" image "$@"; }
else
  say "building the aos-image example (release)"
  (cd "$root" && cargo build -q --release -p aos-image --example aos-image)
  aos=("$CARGO_TARGET_DIR/release/examples/aos-image")
  image_cmd() { local d="$1"; shift; AOS_DATA_DIR="$d" "${aos[@]}" "$@"; }
fi

if ! command -v skopeo >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing skopeo (apt-get install -y skopeo)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo >/dev/null
  else
    say "skopeo is missing and we are not root: part (b) compares against nothing"
  fi
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/aos-image-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
best_of_3() { # prints the best wall time of 3 runs of "$@" (each preceded by its reset hook)
  local best="" t0 t1 d
  for _ in 1 2 3; do
    reset_hook
    t0="$(now)"; "$@" >/dev/null 2>&1; t1="$(now)"
    d="$(elapsed "$t0" "$t1")"
    if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$d" "$best"; then best="$d"; fi
  done
  echo "$best"
}

# ---- (a) build -------------------------------------------------------------------------------
ctx="$work/ctx"
mkdir -p "$ctx/context"
# A realistic ~10 MB binary: machine code compresses like a real static binary does.
# (head closes the pipe early on purpose, hence no pipefail here.)
(set +o pipefail; find /usr/bin /usr/lib -maxdepth 2 -type f -size +100k 2>/dev/null | sort | head -200 \
  | xargs cat 2>/dev/null | head -c $((10 * 1024 * 1024)) > "$ctx/context/agent-registry")
chmod 0755 "$ctx/context/agent-registry"
sed 's/^#.*//' "$root/images/agent-registry/Dockerfile" > "$ctx/Dockerfile"
data="$work/data-build"
reset_hook() { rm -rf "$data"; }
build_cold="$(best_of_3 image_cmd "$data" build -t agent-registry:1.0.0 "$ctx")"
reset_hook() { :; }
build_warm="$(best_of_3 image_cmd "$data" build -t agent-registry:1.0.0 "$ctx")"
digest="$(image_cmd "$data" build -t agent-registry:1.0.0 "$ctx" 2>/dev/null)"
echo "build (10 MB binary, FROM scratch): cold store ${build_cold}s, warm store ${build_warm}s -> $digest"

# ---- (b) import a 200 MB docker-archive ------------------------------------------------------
arch="$work/big.docker.tar"
say "making a ${size_mb} MB docker-archive of incompressible layers"
python3 - "$work/gen" "$arch" "$size_mb" <<'PY'
import hashlib, io, json, os, sys, tarfile
gen, out, size_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(gen, exist_ok=True)
layers, diff_ids = [], []
per_layer = 4
files_per_layer = 5
chunk = size_mb * 1024 * 1024 // (per_layer * files_per_layer)
for i in range(per_layer):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        d = tarfile.TarInfo(f"layer{i}"); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)
        for j in range(files_per_layer):
            data = os.urandom(chunk)
            ti = tarfile.TarInfo(f"layer{i}/blob{j}.bin"); ti.size = len(data); ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    layer = buf.getvalue()
    h = hashlib.sha256(layer).hexdigest()
    layers.append((h, layer)); diff_ids.append("sha256:" + h)
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/x"]},
                     "created": "1970-01-01T00:00:00Z",
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
ch = hashlib.sha256(config).hexdigest()
manifest = json.dumps([{"Config": f"{ch}.json", "RepoTags": ["bench:1"],
                        "Layers": [f"{h}/layer.tar" for h, _ in layers]}]).encode()
with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as t:
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = 0o644
        t.addfile(ti, io.BytesIO(data))
    for h, layer in layers:
        d = tarfile.TarInfo(h); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)
        add(f"{h}/layer.tar", layer)
    add(f"{ch}.json", config)
    add("manifest.json", manifest)
PY
ls -l "$arch" | awk '{printf "archive: %.1f MB\n", $5/1e6}'
# Read it once so both tools start from a warm page cache.
cat "$arch" > /dev/null

data="$work/data-import"
reset_hook() { rm -rf "$data"; sync; }
aos_import="$(best_of_3 image_cmd "$data" import "$arch")"
echo "aos image import: best of 3 ${aos_import}s"

if command -v skopeo >/dev/null 2>&1; then
  oci="$work/skopeo-oci"
  reset_hook() { rm -rf "$oci"; sync; }
  skopeo_copy="$(best_of_3 skopeo --insecure-policy copy -q "docker-archive:$arch" "oci:$oci:bench")"
  echo "skopeo copy docker-archive -> oci: best of 3 ${skopeo_copy}s"
  python3 -c "import sys; a, s = float(sys.argv[1]), float(sys.argv[2]); print(f'ratio aos/skopeo: {a / s:.2f} ({\"aos faster\" if a < s else \"skopeo faster\"})')" "$aos_import" "$skopeo_copy"
fi
