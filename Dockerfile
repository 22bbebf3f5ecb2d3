# syntax=docker/dockerfile:1
#
# Membership service image: a release build on the Rust image, run on debian:bookworm-slim as a
# non-root user. The binary links only libc (SQLite is bundled, TLS is rustls), so the runtime
# stage needs nothing but CA certificates. The build's cache mounts need BuildKit, docker's
# default builder since 23.0.
#
#   docker build -t membership-service .
#   docker run --rm membership-service new-api-key --name provisioning --grant system
#   docker run --rm -p 50051:50051 -p 9464:9464 -v membership-data:/data \
#     -e MEMBERSHIP_AUTH=api-key -e MEMBERSHIP_API_KEYS=provisioning:system:<sha256> \
#     membership-service
#   docker run --rm -e MEMBERSHIP_DATABASE_URL=postgres://… membership-service migrate

# ---- build ----
FROM rust:1.95-bookworm AS builder
WORKDIR /app

COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY migrations migrations
COPY src src

# Only the server binary (src/bin/ also holds the load generator, membership-bench), stripped of
# its symbols by the release profile in Cargo.toml.
#
# Dependencies are cached with BuildKit cache mounts, not in an image layer: the downloaded
# crates and the target directory survive between builds, so cargo recompiles only what changed,
# whereas a layer built from stub sources is thrown away whole by any change to Cargo.lock and
# must copy the crate's layout (build script, workspace member, binaries) to stay right. The
# price: the mounts live in the builder's local cache, so a CI runner that starts empty builds
# everything (they are not exported by --cache-to).
#
# A cached target directory may hold artifacts newer than these sources, whose modification times
# are the build context's (another checkout built in between, say): cargo decides freshness by
# modification time, so touch the workspace's own sources to have both crates and the build
# script rebuilt for sure. The target directory is not part of the image: copy the binary out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/app/target,sharing=locked \
    find build.rs proto migrations src -exec touch {} + \
    && cargo build --release --locked --bin membership-service \
    && cp target/release/membership-service /usr/local/bin/membership-service

# ---- run ----
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 membership \
    && useradd --system --uid 10001 --gid membership --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin membership \
    && mkdir -p /data \
    && chown membership:membership /data

COPY --from=builder /usr/local/bin/membership-service /usr/local/bin/membership-service

# /data holds the SQLite database (and its -wal/-shm files); mount a volume there to keep it.
WORKDIR /data
USER 10001:10001

# Listening on every interface, the server refuses to start with --auth none (the default)
# unless MEMBERSHIP_ALLOW_UNAUTHENTICATED_REMOTE=true: set MEMBERSHIP_AUTH and its keys.
ENV MEMBERSHIP_LISTEN=0.0.0.0:50051 \
    MEMBERSHIP_METRICS_LISTEN=0.0.0.0:9464 \
    MEMBERSHIP_DATABASE_URL=sqlite:///data/membership.db

# gRPC, and Prometheus metrics (GET /metrics).
EXPOSE 50051 9464

# The binary asks itself over gRPC (grpc.health.v1) whether it is SERVING; it reads the same
# MEMBERSHIP_LISTEN as the server and probes loopback when that is 0.0.0.0.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["membership-service", "healthcheck"]

ENTRYPOINT ["membership-service"]
