#!/usr/bin/env bash
# benches/per_request.sh — what one keep-alive request costs hotproxy, in counts
# that do not move with the load of a shared machine.
#
#   benches/per_request.sh [BIN...]         each binary (default: a release build)
#
# For each binary and each of h1 (h2load --h1 -c50) and h2 (h2load -c10 -m10),
# through compare.sh's setup (its PKI, its mTLS nginx backend, hotproxy's config
# there; proxy pinned to core 0, client and backend to core 1), prints per request:
#   instructions  user-space instructions of the proxy (valgrind callgrind,
#                 counted after a 2,000-request warm-up over N requests; the
#                 warm-up's and the run's TLS handshakes are the only noise:
#                 about 3 % at N=20000 with h1's 50 connections);
#   mallocs       calls of glibc malloc (a perf uprobe; needs root);
#   syscalls      read/write-type system calls (strace -c -f).
# CPU time per request is compare.sh's figure; it moves by 10-30 % between runs
# on a shared VM, which is why decisions about small changes were made on these.
#
# Knobs: N=20000 requests per count; MODES="instructions mallocs syscalls";
# SC="h1 h2". Installs valgrind, strace and linux-perf from Debian if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
MODES=${MODES:-"instructions mallocs syscalls"}
SC=${SC:-"h1 h2"}

need() { command -v "$1" >/dev/null || { apt-get install -y "$2" >/dev/null || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }; }; }
need valgrind valgrind
need strace strace
need perf linux-perf

if [[ $# -eq 0 ]]; then
    cargo build --release >/dev/null 2>&1
    set -- target/release/hotproxy
fi

# compare.sh makes the PKI, the backend and the configs; one tiny run, kept.
# shellcheck source=benches/setup.sh
. benches/setup.sh
bench_setup "$1"
PORT=$HP_PORT

load() { # scenario count
    local args="-c 10 -m 10"
    [[ $1 == h1 ]] && args="--h1 -c 50"
    # shellcheck disable=SC2086
    taskset -c 1 h2load $args -n "$2" "https://127.0.0.1:$PORT/" 2>&1 | awk '/^requests:/{print $8}'
}
# valgrind takes a while to start the proxy: up to 20 s.
up() { wait_port "$PORT" || wait_port "$PORT"; }
stop() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; }

instructions() { # bin scenario
    local d="$OUT/cg"; rm -rf "$d"; mkdir -p "$d"
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$d/cg.%p" \
        "$1" run --config "$W/hotproxy/config.yaml" --log-level warn 2>"$d/err" &
    local pid=$!; up
    load "$2" 2000 >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    local ok; ok=$(load "$2" "$N")
    callgrind_control -d "$pid" >/dev/null 2>&1
    stop "$pid"
    local f; f=$(ls -S "$d"/cg.*.* | head -1)
    awk -v n="$ok" '/^(summary|totals):/ {printf "%.0f", $2 / n; exit}' "$f"
}
mallocs() {
    perf probe -q -x "$(ldconfig -p | awk '/libc.so.6 .*x86-64/{print $NF; exit}')" malloc 2>/dev/null || true
    taskset -c 0 "$1" run --config "$W/hotproxy/config.yaml" --log-level warn 2>/dev/null &
    local pid=$!; up
    load "$2" 2000 >/dev/null
    # perf counts the proxy for exactly as long as the load runs.
    local ok
    ok=$(perf stat -e probe_libc:malloc -p "$pid" -o "$OUT/perf.txt" -- bash -c "$(declare -f load); N=$N PORT=$PORT load $2 $N")
    stop "$pid"
    awk -v n="$ok" '/probe_libc:malloc/ {gsub(",", "", $1); printf "%.1f", $1 / n}' "$OUT/perf.txt"
}
syscalls() {
    taskset -c 0 "$1" run --config "$W/hotproxy/config.yaml" --log-level warn 2>/dev/null &
    local pid=$!; up
    load "$2" 2000 >/dev/null
    strace -q -c -f -p "$pid" -o "$OUT/strace.txt" 2>/dev/null & local sp=$!
    # Attached once the kernel names strace as the tracer.
    until awk '/^TracerPid:/ {exit !($2 > 0)}' "/proc/$pid/status"; do sleep 0.01; done
    local ok; ok=$(load "$2" "$N")
    kill -INT "$sp"; wait "$sp" || true
    stop "$pid"
    awk -v n="$ok" '$NF ~ /^(read|recvfrom|readv|write|writev|sendto|sendmsg|recvmsg|epoll_wait)$/ {printf "%s %.2f  ", $NF, $4 / n}' "$OUT/strace.txt"
}

printf '%-28s %-3s %s\n' binary sc "per request"
for bin in "$@"; do
    for sc in $SC; do
        line=""
        for m in $MODES; do line+="$m $($m "$bin" "$sc")   "; done
        printf '%-28s %-3s %s\n' "$(basename "$bin")" "$sc" "$line"
    done
done
