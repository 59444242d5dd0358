# benches/setup.sh — sourced by ab.sh and per_request.sh: compare.sh's setup, kept.
#
#   bench_setup HOTPROXY_BIN
#
# Runs compare.sh once, tiny (DUR=1, one h1 row), with KEEP=1 for its PKI, its
# mTLS nginx backend and the three proxies' configs; starts that backend on
# core 1 and waits for its port. Sets W (the kept directory), OUT (a scratch
# directory), BACKEND (its pid), HP_PORT, NGINX_PORT, HAPROXY_PORT; removes
# both directories and stops the backend on exit.

# wait_port PORT: until something accepts on 127.0.0.1:PORT (at most 10 s).
wait_port() {
    local _
    for _ in $(seq 100); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}

bench_setup() {
    OUT=$(mktemp -d)
    KEEP=1 HOTPROXY="$1" DUR=1 RUNS=1 ONLY="h1 hotproxy" OUT_DIR="$OUT" benches/compare.sh >"$OUT/setup.log" 2>&1
    W=$(sed -n 's/.*kept \(.*\)$/\1/p' "$OUT/setup.log" | tail -1)
    [[ -d $W ]] || { echo "compare.sh setup failed: $OUT/setup.log" >&2; exit 1; }
    HP_PORT=$(sed -n 's/.*bind: 127.0.0.1:\([0-9]*\).*/\1/p' "$W/hotproxy/config.yaml" | head -1)
    NGINX_PORT=$(sed -n 's/.*listen 127.0.0.1:\([0-9]*\) ssl.*/\1/p' "$W/nginx/nginx.conf" | head -1)
    HAPROXY_PORT=$(sed -n 's/.*bind 127.0.0.1:\([0-9]*\) ssl.*/\1/p' "$W/haproxy/haproxy.cfg" | head -1)
    local backend_port
    backend_port=$(sed -n 's/.*listen 127.0.0.1:\([0-9]*\) ssl;.*/\1/p' "$W/backend/nginx.conf" | head -1)
    taskset -c 1 nginx -c "$W/backend/nginx.conf" -e "$W/backend/error.log" 2>/dev/null &
    BACKEND=$!
    trap 'kill $BACKEND 2>/dev/null; rm -rf "$W" "$OUT"' EXIT
    wait_port "$backend_port"
}
