#!/usr/bin/env bash
# pgo/build.sh — build what the image ships: `--profile dist` optimised with pgo/hotproxy.profdata.
#
#   pgo/build.sh [cargo build options...]     prints the binary's path on stdout
#   pgo/build.sh --check                      only asks rustc whether it takes the flags
#                                             and finds the profile (CI runs this: a build
#                                             takes minutes, this a second)
#
# The profile (made by pgo/regenerate.sh from the benches' keep-alive and
# handshake loads) tells LLVM which branches and calls are hot: inlining,
# block layout and cold splitting follow it. It names functions by their
# symbols, which carry a hash of the rustc version and of the build's
# target, so it applies only to the rustc in pgo/rustc-version and to a
# build with an explicit --target (as regenerate.sh's); with another rustc
# the build still works, unoptimised by the profile, and this says so;
# with PGO_REQUIRED=1 in the environment (the Dockerfile sets it) it fails.
# Functions changed since the profile was made are built as without one.
# RUSTFLAGS from the environment are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
want=$(cat pgo/rustc-version 2>/dev/null || true)
have=$(rustc -V)
if [[ $want != "$have" ]]; then
    # PGO_REQUIRED=1 (the Dockerfile's): the image must not ship a binary
    # the profile did not optimise, a warning lost in a build log.
    if [[ ${PGO_REQUIRED:-} == 1 ]]; then
        echo "pgo/build.sh: error: the profile was made with '$want', this is '$have': it would not apply and PGO_REQUIRED=1 (pin the rustc of pgo/rustc-version, or run pgo/regenerate.sh with this one)" >&2
        exit 1
    fi
    echo "pgo/build.sh: the profile was made with '$want', this is '$have': it will not apply (pgo/regenerate.sh makes one for this rustc)" >&2
fi
# -no-pgo-warn-mismatch (LLVM's name for it): functions edited since the profile was made
# are expected, not worth a warning each.
FLAGS="-Cprofile-use=$PWD/pgo/hotproxy.profdata -Cllvm-args=-no-pgo-warn-mismatch"
if [[ ${1:-} == --check ]]; then
    # shellcheck disable=SC2086
    rustc $FLAGS --target "$TRIPLE" --print cfg >/dev/null
    exit
fi
RUSTFLAGS="${RUSTFLAGS:-} $FLAGS" \
    cargo build --profile dist --locked --target "$TRIPLE" "$@" >&2
echo "${CARGO_TARGET_DIR:-$PWD/target}/$TRIPLE/dist/hotproxy"
