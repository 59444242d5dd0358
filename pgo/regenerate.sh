#!/usr/bin/env bash
# pgo/regenerate.sh — make pgo/hotproxy.profdata, the profile pgo/build.sh optimises `dist` with.
#
#   pgo/regenerate.sh
#
# 1. builds an instrumented `dist` binary (-Cprofile-generate) in target/pgo-gen;
# 2. runs it through compare.sh's setup (its PKI, its mTLS nginx backend,
#    hotproxy's config there) under the keep-alive and handshake loads the
#    benches measure: h1 (h2load --h1 -c50),
#    h2 (-c10 -m10), h1new and h1resume (a full or resumed handshake per
#    request), and requests with larger heads and bodies over both; stops it
#    with SIGTERM, which writes the raw profile on the way out;
# 3. merges the raw profiles with llvm-profdata into pgo/hotproxy.profdata
#    (about 6 MB; 1.4 MB in git's packs), records the target it was made
#    for in pgo/target (pgo/build.sh refuses another under PGO_REQUIRED=1)
#    and the rustc version in
#    pgo/rustc-version (the profile applies to that rustc only; with a new
#    rustc, pin its image in the Dockerfile's FROM too, or the image's
#    build fails: it sets PGO_REQUIRED=1). Not
#    `--sparse`: functions that never ran keep their zero counts, which is
#    what marks them cold.
#
# llvm-profdata must be the LLVM major version rustc uses (`rustc -vV`):
# `rustup component add llvm-tools` provides one, Debian's `llvm-N` package
# another (installed here if missing). The profile is only an optimisation
# hint: code changed since it was made builds as it would without one
# (rustc drops the stale functions' counts), so it is regenerated when the
# forwarding path changes, not on every commit.
# Knobs: N=60000 keep-alive requests per scenario, NEW=3000 handshakes.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-60000}
NEW=${NEW:-3000}
ROOT=$PWD
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
LLVM_MAJOR=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')

profdata=""
for c in "$(rustc --print sysroot)/lib/rustlib/$TRIPLE/bin/llvm-profdata" "/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-profdata"; do
    [[ -x $c ]] && { profdata=$c; break; }
done
if [[ -z $profdata ]]; then
    apt-get install -y "llvm-$LLVM_MAJOR" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "llvm-$LLVM_MAJOR" >/dev/null; }
    profdata=/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-profdata
fi

RAW=$(mktemp -d)
# --target keeps build scripts and proc macros uninstrumented (RUSTFLAGS
# would otherwise reach them too); the output lands in target/pgo-gen/TRIPLE.
RUSTFLAGS="-Cprofile-generate=$RAW" CARGO_TARGET_DIR="$ROOT/target/pgo-gen" \
    cargo build --profile dist --locked --target "$TRIPLE"
BIN=$ROOT/target/pgo-gen/$TRIPLE/dist/hotproxy
rm -f "$RAW"/*.profraw # the build's own runs, if any

# shellcheck source=benches/setup.sh
. benches/setup.sh
bench_setup "$BIN"

taskset -c 0 "$BIN" run --config "$W/hotproxy/config.yaml" --log-level warn 2>/dev/null &
pid=$!
wait_port "$HP_PORT"
url="https://127.0.0.1:$HP_PORT/"
taskset -c 1 h2load --h1 -c 50 -n "$N" "$url" | grep '^requests:'
taskset -c 1 h2load -c 10 -m 10 -n "$N" "$url" | grep '^requests:'
taskset -c 1 env TLSSHIM_NO_RESUME=1 LD_PRELOAD="$W/tlsshim.so" \
    h2load --h1 -c 20 -H Connection:close -n "$NEW" "$url" | grep '^requests:'
taskset -c 1 env LD_PRELOAD="$W/tlsshim.so" \
    h2load --h1 -c 20 -H Connection:close -n "$NEW" "$url" | grep '^requests:'
# Larger heads and a request body, so the paths past the smallest request
# are not all judged cold.
taskset -c 1 h2load --h1 -c 10 -n "$((N / 10))" -H "x-trace: $(head -c 600 /dev/zero | tr '\0' a)" \
    -d "$ROOT/Cargo.toml" "$url" | grep '^requests:'
taskset -c 1 h2load -c 4 -m 10 -n "$((N / 10))" -d "$ROOT/Cargo.toml" "$url" | grep '^requests:'
kill -TERM "$pid"
wait "$pid" || true

mkdir -p pgo
"$profdata" merge -o pgo/hotproxy.profdata "$RAW"/*.profraw
rustc -V >pgo/rustc-version
echo "$TRIPLE" >pgo/target
rm -rf "$RAW"
ls -l pgo/hotproxy.profdata
