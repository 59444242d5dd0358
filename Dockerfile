# syntax=docker/dockerfile:1
# hotproxy container image: build with cargo, run on distroless as non-root.
#
#   docker build -t hotproxy:0.1.0 .
#
# The runtime image has no shell, no package manager and no sleep binary;
# the Kubernetes manifests account for that (see examples/kubernetes).

# rustc pinned to the patch release: the profile in pgo/ applies only to
# the rustc it was made with (pgo/rustc-version). `rust:1.95-bookworm`
# moves to each 1.95.x; PGO_REQUIRED=1 below makes pgo/build.sh fail, not
# warn, when the rustc or the target (pgo/target: an arm64 image built
# from an x86_64 profile) is not the profile's, so the image never ships
# without the profile's gain unnoticed.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and the target directory between
# builds (BuildKit); the binary is copied out of the cached target dir.
# pgo/build.sh builds `dist` (`release` with whole-program LTO, Cargo.toml
# says what it buys) optimised with the committed profile pgo/hotproxy.profdata.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    bin=$(PGO_REQUIRED=1 pgo/build.sh) && cp "$bin" /hotproxy

# cc-debian12: glibc and libgcc, which the binary links against, and nothing
# else. Tag :nonroot runs as uid/gid 65532, the user the Deployment pins.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /hotproxy /usr/local/bin/hotproxy
USER 65532:65532
# 8443: the TLS listener of the example config; 9901: admin (probes, metrics, API).
EXPOSE 8443 9901
ENTRYPOINT ["/usr/local/bin/hotproxy"]
CMD ["run", "--config", "/etc/hotproxy/config/config.yaml"]
