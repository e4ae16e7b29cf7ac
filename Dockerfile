# syntax=docker/dockerfile:1
# The remotefn binary (relay, demo game server, call, bench, probe) on a slim base, run as a
# non-root user. From the repository root:
#   docker build -t remotefn .
#   docker run --rm -p 7878:7878 -p 7879:7879 remotefn              # a relay (the default command)
#   docker run --rm -p 7878:7878 remotefn serve --listen 0.0.0.0:7878   # the demo game server
# Two relays behind HAProxy with a game server attached to both: examples/deploy/compose.yaml.

# At least Cargo.toml's rust-version.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# The manifest names its benches, so cargo wants them present to build anything.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
# No debug info in the image's binary (the release profile keeps some for profiling).
ENV CARGO_PROFILE_RELEASE_DEBUG=0
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --features cli --bin remotefn \
    && cp target/release/remotefn /usr/local/bin/remotefn

FROM debian:bookworm-slim
# ca-certificates: the system trust store, for TLS to relays verified without a CA file.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin remotefn
COPY --from=build /usr/local/bin/remotefn /usr/local/bin/remotefn
USER remotefn
# 7878 players, 7879 game servers (hosts), 9187 relay metrics, 9186 game server metrics.
EXPOSE 7878 7879 9186 9187
# Alive when the player port's event loop answers a handshake (a relay with no game server
# attached answers with a refusal, which counts). Override it for a game server that only
# attaches to relays: `remotefn probe http://127.0.0.1:9186/metrics`.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["remotefn", "probe", "127.0.0.1:7878", "--timeout-ms", "3000"]
# SIGTERM: drain, say goodbye, exit 0. SIGHUP: read the TLS certificates again.
STOPSIGNAL SIGTERM
ENTRYPOINT ["remotefn"]
CMD ["relay", "--players", "0.0.0.0:7878", "--hosts", "0.0.0.0:7879", "--metrics", "0.0.0.0:9187"]
