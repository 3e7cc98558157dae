# agentapi-proxy container image. Build from the repository root:
#   docker build -t agentapi-proxy .
# Needs only the Rust crate registry (crates.io) and Debian's package archive.
# Deployment notes (volume, config, auth, stop timeout): docs/deployment.md.

# ---- build ------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The same command `make bench` runs (bench/run.sh); --locked: exactly Cargo.lock.
RUN cargo build --release --locked --bin agentapi-proxy \
 && install -m 0755 target/release/agentapi-proxy /usr/local/bin/agentapi-proxy

# ---- runtime ----------------------------------------------------------------------------
FROM debian:bookworm-slim
# bash runs the startup script, git clones `repository` tags, ca-certificates for GitHub
# and the agents' APIs, tini reaps and forwards signals as PID 1, curl for HEALTHCHECK.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates git bash tini curl \
 && rm -rf /var/lib/apt/lists/*
# A dedicated user; data_dir must be 0700 and owned by it (the proxy refuses a data_dir
# that others can write to).
RUN groupadd --system --gid 10001 agentapi \
 && useradd --system --uid 10001 --gid agentapi --home-dir /var/lib/agentapi-proxy \
      --shell /usr/sbin/nologin agentapi \
 && install -d -m 0700 -o agentapi -g agentapi /var/lib/agentapi-proxy \
 && install -d -m 0755 /etc/agentapi-proxy
COPY --from=build /usr/local/bin/agentapi-proxy /usr/local/bin/agentapi-proxy

# The database, per-session work directories and agent logs. The variable beats any
# `data_dir` in the mounted config.json, so the volume is always where the data goes.
ENV AGENTAPI_PROXY_DATA_DIR=/var/lib/agentapi-proxy
VOLUME /var/lib/agentapi-proxy
WORKDIR /var/lib/agentapi-proxy
USER agentapi
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz >/dev/null || exit 1
# Mount a config.json at /etc/agentapi-proxy/config.json. Binding 0.0.0.0 with auth
# disabled is refused (exit 2): enable `auth` in it, or add --allow-unauthenticated.
ENTRYPOINT ["tini", "--", "agentapi-proxy"]
CMD ["server", "--bind", "0.0.0.0", "-c", "/etc/agentapi-proxy/config.json"]
