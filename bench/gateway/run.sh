#!/usr/bin/env bash
# The aos gateway against nginx and haproxy as reverse proxies of the same tiny upstream.
#
# - Upstream: nginx (1 worker) serving a 64-byte static file on 127.0.0.1:18000.
# - Proxies, configured alike: HTTP/1.1 keep-alive on both sides, X-Forwarded-For/-Proto added,
#   no access log, one worker each:
#     aos     examples/gateway_bench.rs --workers 1: one proxy worker, as
#             `aos gateway --gateway-workers 1` runs it (one thread with its own event loop
#             serves the listener, the client connections and the upstream connections; the
#             configuration and admin port on a second, idle thread), a Service + hand-written
#             Endpoints, no VirtualService: the route is the Service's own name with Istio's
#             defaults (2 retries on connect-failure/refused-stream/503, round robin), metrics
#             on (request counter, duration histogram, per-pod rate)                      :18080
#     nginx   worker_processes 1; proxy_pass to an upstream block with keepalive         :18081
#     haproxy nbthread 1; mode http, http-reuse always                                   :18082
#   `aos gateway` runs one worker per core by default (as nginx's `worker_processes auto`);
#   with one core granted (the pinning below), one worker each is the fair comparison.
# - Load: wrk, 1 thread, $CONNS keep-alive connections, $DURATION after a $WARMUP warm-up.
#
# CPU pinning (the machine has 2 cores): the proxy under test runs alone on CPU $PROXY_CPU
# (default 1), every proxy in turn on the same CPU; wrk and the upstream share CPU $LOAD_CPU
# (default 0). Every proxy thus gets one whole core, and the numbers compare proxies, not
# schedulers. With more cores, set the variables to separate wrk from the upstream too.
#
# Noise: on a shared machine other processes take CPU time from both cores; compare aos and
# nginx within one run (the ratios printed at the end), and repeat (RUNS=3 repeats the whole
# comparison and prints every run's ratios).
#
# CPU per request: the proxy's utime + stime (/proc/PID/stat) over the measured wrk run, divided
# by the requests wrk completed; steadier under noise than requests/s, since time other
# processes take from the proxy's CPU is not counted.
#
# Usage: bench/gateway/run.sh            (DURATION=10s CONNS=64 WARMUP=3s RUNS=1 by default)
#        WITH_HAPROXY=0                  skip haproxy (aos against nginx only)
# Env:   AOS_GATEWAY_BENCH_BIN=path      use a prebuilt gateway_bench instead of building it
#        CARGO_TARGET_DIR                where cargo builds
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNS=${CONNS:-64}
RUNS=${RUNS:-1}
WITH_HAPROXY=${WITH_HAPROXY:-1}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
UP_PORT=18000 AOS_PORT=18080 AOS_ADMIN=18901 NGINX_PORT=18081 HAPROXY_PORT=18082
HOST_HEADER=bench.default.svc.cluster.local

install_missing() {
  local missing=()
  command -v nginx >/dev/null || missing+=(nginx)
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v taskset >/dev/null || missing+=(util-linux)
  if ((${#missing[@]})); then
    echo "installing ${missing[*]}" >&2
    apt-get install -y "${missing[@]}" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
  fi
}
install_missing
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

if [[ -n "${AOS_GATEWAY_BENCH_BIN:-}" ]]; then
  AOS_BIN=$AOS_GATEWAY_BENCH_BIN
else
  (cd "$ROOT" && cargo build --release -q -p aos-gateway --example gateway_bench)
  AOS_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/gateway_bench
fi

W=$(mktemp -d /tmp/aos-gateway-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

chmod 755 "$W"
mkdir -p "$W/www"
printf '%063d\n' 0 >"$W/www/index.html"

cat >"$W/upstream.conf" <<CONF
worker_processes 1;
daemon off;
pid $W/upstream.pid;
error_log $W/upstream-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$UP_PORT backlog=4096;
    location / { root $W/www; }
  }
}
CONF

cat >"$W/nginx-proxy.conf" <<CONF
worker_processes 1;
daemon off;
pid $W/nginx-proxy.pid;
error_log $W/nginx-proxy-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 100000000;
  upstream up {
    server 127.0.0.1:$UP_PORT;
    keepalive 256;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
CONF

cat >"$W/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  default_backend be
backend be
  server up 127.0.0.1:$UP_PORT maxconn 4096
CONF

cat >"$W/aos.yaml" <<CONF
apiVersion: v1
kind: Service
metadata: {name: bench, namespace: default}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: bench, namespace: default}
subsets:
- addresses: [{ip: 127.0.0.1}]
  ports: [{name: http, port: $UP_PORT}]
CONF

# The seed's route (shared/seed/corrected/virtualservice.yaml and destinationrule.yaml) on the
# same upstream, without its fault injection (0.1% of requests delayed 2 s, 1% aborted: a
# benchmark of that measures the faults) and without h2UpgradePolicy (the upstream speaks
# HTTP/1.1): prefix match, route timeout, retries with a per-try timeout, CORS, connection-pool
# limits and outlier detection, all on the request path.
cat >"$W/aos-seed.yaml" <<CONF
$(cat "$W/aos.yaml")
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: bench, namespace: default}
spec:
  hosts: [bench]
  http:
  - match: [{uri: {prefix: /}}]
    route: [{destination: {host: bench, port: {number: 80}}, weight: 100}]
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "gateway-error,connect-failure,refused-stream"}
    timeout: 5s
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}]
      allowMethods: [GET, POST, PUT, DELETE]
      allowHeaders: [content-type, authorization]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: bench, namespace: default}
spec:
  host: bench
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms}
      http: {http1MaxPendingRequests: 100, http2MaxRequests: 1000, idleTimeout: 90s}
    outlierDetection:
      consecutiveGatewayErrors: 5
      consecutive5xxErrors: 5
      interval: 30s
      baseEjectionTime: 30s
      maxEjectionPercent: 50
      minHealthPercent: 50
      splitExternalLocalOriginErrors: true
CONF

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 did not open" >&2
  return 1
}

# The pid whose RSS counts: nginx's worker (the master's child), else the process itself.
worker_pid() {
  local child
  child=$(pgrep -P "$1" | head -1 || true)
  echo "${child:-$1}"
}

taskset -c "$LOAD_CPU" "$NGINX" -c "$W/upstream.conf" -p "$W" 2>>"$W/upstream-error.log" &
PIDS+=($!)
wait_port $UP_PORT

# wrk's latency line "50%  1.23ms" → milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v; sub(/[a-z]+$/, "", n); u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") n = n / 1000; else if (u == "s") n = n * 1000; else if (u == "m") n = n * 60000;
    printf "%.3f", n }'
}

# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat; the command
# name in field 2 has no spaces for the proxies measured here).
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {
  awk '{print $14 + $15}' "/proc/$1/stat"
}

measure() {
  local name=$1 port=$2 pid=$3 host=$4
  wait_port "$port"
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$WARMUP" -H "Host: $host" "http://127.0.0.1:$port/index.html" >/dev/null
  local rpid out rss_kb peak_kb=0 sampler
  rpid=$(worker_pid "$pid")
  (while kill -0 "$rpid" 2>/dev/null; do
     awk '/VmRSS/ {print $2}' "/proc/$rpid/status" 2>/dev/null; sleep 0.2
   done) >"$W/$name.rss" &
  sampler=$!
  local cpu0 cpu1 nreq
  cpu0=$(cpu_ticks "$rpid")
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "Host: $host" "http://127.0.0.1:$port/index.html")
  cpu1=$(cpu_ticks "$rpid")
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  echo "$out" >"$W/$name.wrk"
  nreq=$(awk '/requests in/ {print $1}' <<<"$out")
  local us_req
  us_req=$(awk -v t="$((cpu1 - cpu0))" -v hz="$CLK_TCK" -v n="$nreq" 'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  peak_kb=$(sort -n "$W/$name.rss" | tail -1)
  rss_kb=${peak_kb:-0}
  RESULTS+=("$name $rps $p50 $p99 $rss_kb ${non2xx:-0} $us_req")
}

run_once() {
RESULTS=()
# aos: the Service's own route (Istio's defaults), then the seed-shaped route
for cfg in aos aos-seed; do
  taskset -c "$PROXY_CPU" "$AOS_BIN" --config "$W/$cfg.yaml" --listen "127.0.0.1:$AOS_PORT" \
    --admin-listen "127.0.0.1:$AOS_ADMIN" --workers 1 2>"$W/$cfg.log" &
  AOS_PID=$!
  PIDS+=($AOS_PID)
  measure $cfg $AOS_PORT $AOS_PID $HOST_HEADER
  kill $AOS_PID; wait $AOS_PID 2>/dev/null || true
done

# nginx
taskset -c "$PROXY_CPU" "$NGINX" -c "$W/nginx-proxy.conf" -p "$W" 2>>"$W/nginx-proxy-error.log" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
measure nginx $NGINX_PORT $NGINX_PID $HOST_HEADER
kill $NGINX_PID; wait $NGINX_PID 2>/dev/null || true

# haproxy
if ((WITH_HAPROXY)); then
taskset -c "$PROXY_CPU" "$HAPROXY" -f "$W/haproxy.cfg" -db 2>"$W/haproxy.log" &
HAPROXY_PID=$!
PIDS+=($HAPROXY_PID)
measure haproxy $HAPROXY_PORT $HAPROXY_PID $HOST_HEADER
kill $HAPROXY_PID; wait $HAPROXY_PID 2>/dev/null || true
fi

echo
echo "wrk -t1 -c$CONNS -d$DURATION; proxy on CPU $PROXY_CPU, wrk + upstream on CPU $LOAD_CPU"
printf '%-8s %12s %9s %9s %9s %8s %10s\n' proxy 'requests/s' 'p50 ms' 'p99 ms' 'RSS MB' 'non-2xx' 'CPU us/req'
for r in "${RESULTS[@]}"; do
  read -r name rps p50 p99 rss non2xx us_req <<<"$r"
  printf '%-8s %12.0f %9.3f %9.3f %9.1f %8s %10s\n' "$name" "$rps" "$p50" "$p99" "$(awk -v k="$rss" 'BEGIN{print k/1024}')" "$non2xx" "$us_req"
done
for a in 0 1; do
  read -r a_name a_rps a_p50 a_p99 _ _ a_us <<<"${RESULTS[$a]}"
  for ((i = 2; i < ${#RESULTS[@]}; i++)); do
    read -r name rps p50 p99 _ _ us <<<"${RESULTS[$i]}"
    awk -v an="$a_name" -v n="$name" -v ar="$a_rps" -v r="$rps" -v a50="$a_p50" -v b50="$p50" -v a99="$a_p99" -v b99="$p99" -v au="$a_us" -v u="$us" \
      'BEGIN { printf "%-8s/%-8s throughput %.2fx   p50 %.2fx   p99 %.2fx   CPU/request %.2fx\n", an, n, ar / r, a50 / b50, a99 / b99, u ? au / u : 0 }'
  done
done
a_rss=$(for a in 0 1; do read -r _ _ _ _ rss _ <<<"${RESULTS[$a]}"; echo "$rss"; done | sort -n | tail -1)
awk -v rss="$a_rss" 'BEGIN { printf "aos RSS under load: %.1f MB (goal <= 20 MB)\n", rss / 1024 }'
}

for run in $(seq 1 "$RUNS"); do
  ((RUNS > 1)) && echo && echo "run $run of $RUNS"
  run_once
done
