#!/usr/bin/env bash
# benches/per_request.sh — what one keep-alive request costs hotproxy, in counts
# that do not move with the load of a shared machine.
#
#   benches/per_request.sh [BIN...]         each binary (default: pgo/build.sh's, as the image ships)
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
#   switches      context switches of the proxy (perf stat; not with
#                 valgrind/strace attached, which slow it until it never idles).
# h1new / h1resume (opt-in in SC) count per CONNECTION instead: h2load --h1 -c20
# with Connection: close, a full or a resumed handshake each (compare.sh's shim),
# NEW=2000 connections; the syscall list adds shutdown, accept4, epoll_ctl and
# the eventfd writes that wake the runtime.
# CPU time per request is compare.sh's figure; it moves by 10-30 % between runs
# on a shared VM, which is why decisions about small changes were made on these.
#
# Knobs: N=20000 requests per count; NEW=2000 connections per count;
# MODES="instructions mallocs syscalls switches"; SC="h1 h2" (any of h1 h2 h1new
# h1resume). Installs valgrind, strace and linux-perf from Debian if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
NEW=${NEW:-2000}
MODES=${MODES:-"instructions mallocs syscalls switches"}
SC=${SC:-"h1 h2"}

need() { command -v "$1" >/dev/null || { apt-get install -y "$2" >/dev/null || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }; }; }
need valgrind valgrind
need strace strace
need perf linux-perf

if [[ $# -eq 0 ]]; then
    bin=$(pgo/build.sh --quiet) || { echo "pgo/build.sh failed" >&2; exit 1; }
    set -- "$bin"
fi

# compare.sh makes the PKI, the backend and the configs; one tiny run, kept.
# shellcheck source=benches/setup.sh
. benches/setup.sh
bench_setup "$1"
PORT=$HP_PORT

load() { # scenario count
    local args="-c 10 -m 10" pre=""
    case $1 in
        h1) args="--h1 -c 50" ;;
        h1new) args="--h1 -c 20 -H Connection:close" pre="env TLSSHIM_NO_RESUME=1 LD_PRELOAD=$W/tlsshim.so" ;;
        h1resume) args="--h1 -c 20 -H Connection:close" pre="env LD_PRELOAD=$W/tlsshim.so" ;;
    esac
    # shellcheck disable=SC2086
    taskset -c 1 $pre h2load $args -n "$2" "https://127.0.0.1:$PORT/" 2>&1 | awk '/^requests:/{print $8}'
}
# Requests per count: per connection for the handshake scenarios.
count() { case $1 in h1new | h1resume) echo "$NEW" ;; *) echo "$N" ;; esac; }
# Warm-up requests (a full handshake under valgrind takes milliseconds).
warm() { case $1 in h1new | h1resume) echo 300 ;; *) echo 2000 ;; esac; }
# valgrind takes a while to start the proxy: up to 20 s.
up() { wait_port "$PORT" || wait_port "$PORT"; }
stop() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; }

instructions() { # bin scenario
    local d="$OUT/cg"; rm -rf "$d"; mkdir -p "$d"
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$d/cg.%p" \
        "$1" run --config "$W/hotproxy/config.yaml" --log-level warn 2>"$d/err" &
    local pid=$!; up
    load "$2" "$(warm "$2")" >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    local ok; ok=$(load "$2" "$(count "$2")")
    callgrind_control -d "$pid" >/dev/null 2>&1
    stop "$pid"
    local f; f=$(ls -S "$d"/cg.*.* | head -1)
    awk -v n="$ok" '/^(summary|totals):/ {printf "%.0f", $2 / n; exit}' "$f"
}
# perf_count EVENT FORMAT BIN SCENARIO: EVENT per request of a fresh proxy,
# counted for exactly as long as the load runs.
perf_count() {
    taskset -c 0 "$3" run --config "$W/hotproxy/config.yaml" --log-level warn 2>/dev/null &
    local pid=$!; up
    load "$4" "$(warm "$4")" >/dev/null
    local ok
    ok=$(perf stat -e "$1" -p "$pid" -o "$OUT/perf.txt" -- bash -c "$(declare -f load); W=$W PORT=$PORT load $4 $(count "$4")")
    stop "$pid"
    awk -v e="$1" -v f="$2" -v n="$ok" '$2 == e {gsub(",", "", $1); printf f, $1 / n}' "$OUT/perf.txt"
}
mallocs() {
    perf probe -q -x "$(ldconfig -p | awk '/libc.so.6 .*x86-64/{print $NF; exit}')" malloc 2>/dev/null || true
    perf_count probe_libc:malloc %.1f "$1" "$2"
}
switches() { perf_count context-switches %.2f "$1" "$2"; }
syscalls() {
    taskset -c 0 "$1" run --config "$W/hotproxy/config.yaml" --log-level warn 2>/dev/null &
    local pid=$!; up
    load "$2" "$(warm "$2")" >/dev/null
    strace -q -c -f -p "$pid" -o "$OUT/strace.txt" 2>/dev/null & local sp=$!
    # Attached once the kernel names strace as the tracer.
    until awk '/^TracerPid:/ {exit !($2 > 0)}' "/proc/$pid/status"; do sleep 0.01; done
    local ok; ok=$(load "$2" "$(count "$2")")
    kill -INT "$sp"; wait "$sp" || true
    stop "$pid"
    awk -v n="$ok" '$NF ~ /^(read|recvfrom|readv|write|writev|sendto|sendmsg|recvmsg|epoll_wait|shutdown|accept4|epoll_ctl)$/ {printf "%s %.2f  ", $NF, $4 / n}' "$OUT/strace.txt"
}

printf '%-28s %-3s %s\n' binary sc "per request"
for bin in "$@"; do
    for sc in $SC; do
        line=""
        for m in $MODES; do line+="$m $($m "$bin" "$sc")   "; done
        printf '%-28s %-3s %s\n' "$(basename "$bin")" "$sc" "$line"
    done
done
