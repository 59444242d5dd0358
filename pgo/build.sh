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
# build with an explicit --target (as regenerate.sh's) for the target in
# pgo/target (the host's, built for here); with another rustc or target
# the build still works, unoptimised by the profile, and this says so;
# with PGO_REQUIRED=1 in the environment (the Dockerfile sets it) it fails.
# Functions changed since the profile was made are built as without one.
# RUSTFLAGS from the environment are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
# A profile that cannot apply: under PGO_REQUIRED=1 (the Dockerfile's) an
# error, the image must not ship a binary the profile did not optimise (a
# warning is lost in a build log); a warning otherwise.
cannot_apply() {
    if [[ ${PGO_REQUIRED:-} == 1 ]]; then
        echo "pgo/build.sh: error: $1: it would not apply and PGO_REQUIRED=1 ($2)" >&2
        exit 1
    fi
    echo "pgo/build.sh: $1: it will not apply ($3)" >&2
}
want=$(cat pgo/rustc-version 2>/dev/null || true)
have=$(rustc -V)
if [[ $want != "$have" ]]; then
    cannot_apply "the profile was made with '$want', this is '$have'" \
        "pin the rustc of pgo/rustc-version, or run pgo/regenerate.sh with this one" \
        "pgo/regenerate.sh makes one for this rustc"
fi
# The symbols carry the target too: a profile made on x86_64 does not
# apply to an arm64 build (an image built for linux/arm64, say).
want=$(cat pgo/target 2>/dev/null || true)
if [[ $want != "$TRIPLE" ]]; then
    cannot_apply "the profile was made for target '$want', this build is for '$TRIPLE'" \
        "build for $want, or run pgo/regenerate.sh on this target" \
        "pgo/regenerate.sh on this target makes one for it"
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
