# The controller image: built with the Rust toolchain, run from a distroless base as a
# non-root user. `base` (not `static` or `cc`) because libgit2 links OpenSSL and glibc.
# Container builds cannot run where this project is developed; this file is kept
# correct by reading (see the README).

FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin benches \
 && echo 'fn main() {}' > src/main.rs \
 && echo '' > src/lib.rs \
 && for b in fleet_core peak_memory apply_throughput drift_check; do echo 'fn main() {}' > benches/$b.rs; done \
 && cargo build --release --locked --bin fleetgate \
 && rm -rf src benches
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin fleetgate

FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build /src/target/release/fleetgate /usr/local/bin/fleetgate
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fleetgate"]
CMD ["controller"]
