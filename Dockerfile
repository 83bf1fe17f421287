# syntax=docker/dockerfile:1
#
# gitlab-connector: one image for every role (serve --roles api,ingest | worker) and for the
# operator commands (migrate, keys, tenants). Build with BuildKit (the default builder of current
# Docker releases), from the repository root:
#
#   docker build -t gitlab-connector:dev .
#
# The cargo registry, git checkouts and target directory live in BuildKit cache mounts, so a
# rebuild after a source change recompiles only the workspace crates, not the dependencies.

ARG RUST_VERSION=1.95

############################ builder ############################
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src

# aws-lc-sys (the rustls crypto provider) compiles C with the image's gcc; nothing else is needed
# on x86_64/aarch64 Linux (pre-generated bindings, no cmake, no OpenSSL).
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# Embedded at compile time by sqlx::migrate!("../../migrations") in crates/store.
COPY migrations ./migrations

# The binary is copied out of the cache-mounted target directory, which is not part of the layer.
RUN --mount=type=cache,id=gitlab-connector-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=gitlab-connector-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=gitlab-connector-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p gitlab-connector \
 && install -D -m 0755 target/release/gitlab-connector /out/gitlab-connector

############################ runtime ############################
FROM debian:bookworm-slim AS runtime

# CA certificates only: rustls' platform verifier reads the system roots (GitLab over https,
# JWKS URLs, PostgreSQL with TLS).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed, numeric, non-root uid/gid so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 gitlab-connector \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin gitlab-connector

COPY --from=builder /out/gitlab-connector /usr/local/bin/gitlab-connector

USER 10001:10001
# Production by default: the binary then refuses to start without DATABASE_APP_URL, a master key
# ring (MASTER_KEYS or MASTER_KEYS_FILE) and a JWT key, and does not migrate on start.
ENV LISTEN_ADDR=0.0.0.0:8080 \
    APP_ENV=production
EXPOSE 8080

# The binary handles SIGTERM itself (drains HTTP, lets running jobs finish within SHUTDOWN_GRACE),
# so it runs as PID 1 without an init wrapper.
ENTRYPOINT ["gitlab-connector"]
CMD ["serve"]
