# syntax=docker/dockerfile:1
# distriSocks pod image: `docker build -t distrisocks .` (BuildKit, the default since Docker 23).
#
# Running it: glommio drives every socket through io_uring, which Docker's default seccomp
# profile blocks since Docker 25 (moby/moby#46762), and io_uring needs locked memory. Run with
#   --security-opt seccomp=unconfined --ulimit memlock=-1:-1
# (docker-compose.yml does this). The pod refuses to listen on 0.0.0.0 without
# DISTRISOCKS_JWT_SECRET (or an explicit DISTRISOCKS_AUTH=dev).

# ---- builder ---------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder

# rdkafka 0.39 (default features off) builds its bundled librdkafka with mklove's ./configure
# and make: no cmake, and no zlib/ssl/zstd/curl/sasl libraries. It needs bash, a C and C++
# compiler and make (build-essential); python3 only for its linker script (lds-gen.py; without
# it configure quietly drops the script). rusqlite (bundled SQLite), mimalloc and glommio
# compile C with the same toolchain.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config python3 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what the build reads (the bench target must exist for the manifest to load;
# migrations are include_str!'d).
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY migrations ./migrations
COPY src ./src

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin distrisocks \
    && install -D -m 0755 target/release/distrisocks /out/distrisocks

# ---- runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim

# curl only for the HEALTHCHECK; ca-certificates for TLS to managed backends.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 distrisocks \
    && useradd --system --uid 10001 --gid distrisocks --home-dir /var/lib/distrisocks \
        --shell /usr/sbin/nologin distrisocks \
    && install -d -o distrisocks -g distrisocks -m 0750 /var/lib/distrisocks /var/lib/distrisocks/data

COPY --from=builder /out/distrisocks /usr/local/bin/distrisocks

# Numeric, so that runAsNonRoot-style checks can verify it.
USER 10001:10001
WORKDIR /var/lib/distrisocks
ENV DISTRISOCKS_LISTEN=0.0.0.0:8080 \
    DISTRISOCKS_DATA_DIR=/var/lib/distrisocks/data
VOLUME ["/var/lib/distrisocks/data"]
EXPOSE 8080

# SIGTERM = graceful shutdown (finish in-flight messages, close sockets with 1001).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]

ENTRYPOINT ["/usr/local/bin/distrisocks"]
