#!/usr/bin/env bash
# benches/ab.sh — CPU per request of several proxies, interleaved round by round.
#
#   benches/ab.sh ROUNDS TARGET...    TARGET: a hotproxy binary, `nginx` or `haproxy`
#
# compare.sh runs each target for a whole block of time; on a shared VM the
# host's load then lands on one target and not another. Here every round runs
# every target once, back to back, on compare.sh's setup (its PKI, mTLS nginx
# backend and proxy configs; proxy pinned to core 0, client and backend to
# core 1), with a fixed request count per sample (h2load, N=40000):
#   h1  --h1 -c50          h2  -c10 -m10
# Prints one line per (round, scenario, target): CPU us/request (user, sys),
# req/s and peak RSS; then per scenario the median and, per round, each
# target's ratio to the first target (read the paired ratios, not the raw
# figures, when the host is noisy).
#   h1new / h1resume (opt-in): --h1 -c50 with Connection: close, a full or a
#   resumed TLS handshake per request (compare.sh's shim), NEW=4000 requests
# Knobs: N=40000, NEW=4000, SC="h1 h2" (any of h1 h2 h1new h1resume).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:?rounds}; shift
[[ $# -gt 0 ]] || { echo "usage: benches/ab.sh ROUNDS TARGET..." >&2; exit 2; }
N=${N:-40000}
NEW=${NEW:-4000}
SC=${SC:-"h1 h2"}
TCK=$(getconf CLK_TCK)
first=""; for t in "$@"; do [[ $t == nginx || $t == haproxy ]] || { first=$t; break; }; done

# shellcheck source=benches/setup.sh
. benches/setup.sh
bench_setup "${first:-}"

pids() { echo "$1"; pgrep -P "$1" || true; }
ticks() { local u=0 s=0 a b p; for p in $(pids "$1"); do read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat"); u=$((u + a)); s=$((s + b)); done; echo "$u $s"; }
hwm() { local k=0 p; for p in $(pids "$1"); do k=$((k + $(awk '/VmHWM/{print $2}' "/proc/$p/status"))); done; echo "$k"; }

for ((r = 1; r <= ROUNDS; r++)); do
    for t in "$@"; do
        case $t in
            nginx) taskset -c 0 nginx -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" 2>/dev/null & port=$NGINX_PORT ;;
            haproxy) taskset -c 0 haproxy -db -f "$W/haproxy/haproxy.cfg" 2>/dev/null & port=$HAPROXY_PORT ;;
            *) taskset -c 0 "$t" run --config "$W/hotproxy/config.yaml" --log-level warn 2>/dev/null & port=$HP_PORT ;;
        esac
        pid=$!
        wait_port "$port"
        taskset -c 1 h2load --h1 -n 3000 -c 50 "https://127.0.0.1:$port/" >/dev/null 2>&1
        for sc in $SC; do
            pre=() n=$N
            case $sc in
                h1) args="--h1 -c 50" ;;
                h2) args="-c 10 -m 10" ;;
                # A full (h1new) or resumed (h1resume) handshake per request,
                # with compare.sh's client-side shim deciding resumption.
                h1new) args="--h1 -c 50 -H Connection:close" n=$NEW pre=(env TLSSHIM_NO_RESUME=1 LD_PRELOAD="$W/tlsshim.so") ;;
                h1resume) args="--h1 -c 50 -H Connection:close" n=$NEW pre=(env LD_PRELOAD="$W/tlsshim.so") ;;
                *) echo "unknown scenario $sc" >&2; exit 2 ;;
            esac
            for p in $(pids "$pid"); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done
            c0=$(ticks "$pid")
            # shellcheck disable=SC2086
            out=$(taskset -c 1 "${pre[@]}" h2load $args -n "$n" "https://127.0.0.1:$port/" 2>&1)
            c1=$(ticks "$pid")
            ok=$(awk '/^requests:/{print $8}' <<<"$out")
            rps=$(awk '/^finished in/{print $4}' <<<"$out")
            echo "$r $sc $(basename "$t") $c0 $c1 $ok $rps $(hwm "$pid")" |
                awk -v t="$TCK" '{printf "round %s %-3s %-14s cpu %6.1f us/req (user %5.1f sys %5.1f)  req/s %8.0f  rss %6.1f MB\n", $1, $2, $3, ($6+$7-$4-$5)/t*1e6/$8, ($6-$4)/t*1e6/$8, ($7-$5)/t*1e6/$8, $9, $10/1024}' | tee -a "$OUT/rows"
        done
        kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    done
done
echo
python3 - "$OUT/rows" "$(basename "$1")" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    f = line.split()
    rows[(f[2], int(f[1]))][f[3]] = float(f[5])
ref = sys.argv[2]
targets = sorted({t for r in rows.values() for t in r})
for sc in sorted({k[0] for k in rows}):
    rounds = sorted(k[1] for k in rows if k[0] == sc)
    for t in targets:
        cpu = [rows[(sc, r)][t] for r in rounds]
        ratio = [rows[(sc, r)][t] / rows[(sc, r)][ref] for r in rounds]
        print(f"{sc} {t:<14} cpu us/req median {statistics.median(cpu):6.1f}   / {ref} per round: median {statistics.median(ratio):.2f} [{' '.join(f'{x:.2f}' for x in ratio)}]")
PY
