#!/usr/bin/env bash
# benches/long_lived.sh — what an HTTP/2 request costs on connections that have lived a while.
#
#   benches/long_lived.sh [BIN...]    each binary (default: pgo/build.sh's, as the image ships)
#
# per_request.sh counts over fresh connections, a few seconds old: state that
# grows with a connection's age (HPACK's dynamic table, a new `date` value a
# second) does not show there. Here one h2load run (-c10 -m10, compare.sh's
# setup, proxy pinned to core 0 under valgrind callgrind) lasts HOLD+SPAN
# seconds on the same connections; the counters are zeroed after HOLD seconds
# and read SPAN seconds later. Prints user-space instructions per request
# (requests counted as calls of the access log's per-request `Exchange::begin`)
# and, of them, the response heads' HPACK encoding.
#
# Knobs: HOLD=75, SPAN=20 (seconds; the table holds about 60 one-second dates).
set -euo pipefail
cd "$(dirname "$0")/.."
HOLD=${HOLD:-75}
SPAN=${SPAN:-20}

if [[ $# -eq 0 ]]; then
    bin=$(pgo/build.sh --quiet) || { echo "pgo/build.sh failed" >&2; exit 1; }
    set -- "$bin"
fi

# shellcheck source=benches/setup.sh
. benches/setup.sh
bench_setup "$1"
PORT=$HP_PORT

for bin in "$@"; do
    d="$OUT/ll"; rm -rf "$d"; mkdir -p "$d"
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$d/cg.%p" \
        "$bin" run --config "$W/hotproxy/config.yaml" --log-level warn 2>"$d/err" &
    pid=$!
    wait_port "$PORT" || wait_port "$PORT"
    taskset -c 1 h2load -c 10 -m 10 -D $((HOLD + SPAN + 5)) "https://127.0.0.1:$PORT/" >"$d/h2load.txt" 2>&1 &
    load=$!
    sleep "$HOLD"; callgrind_control -z "$pid" >/dev/null 2>&1
    sleep "$SPAN"; callgrind_control -d "$pid" >/dev/null 2>&1
    wait "$load" || true
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    f=$(ls -S "$d"/cg.*.* | head -1)
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
    requests=$(callgrind_annotate --auto=no --threshold=100 --tree=caller "$f" 2>/dev/null |
        grep -E '<.*Exchange::begin' | sed -n '1s/.*(\([0-9,]*\)x).*/\1/p' | tr -d , || true)
    hpack=$(callgrind_annotate --auto=no --threshold=100 --inclusive=yes "$f" 2>/dev/null |
        awk '/HeaderBlock::into_encoding \[/ && !n++ {gsub(",", "", $1); print $1}' || true)
    printf '%-28s h2 after %ss  instructions %d  of which HPACK encoding %d  (%d requests)\n' \
        "$(basename "$bin")" "$HOLD" $((total / requests)) $((${hpack:-0} / requests)) "$requests"
done
