# syntax=docker/dockerfile:1
# The controller image, for those who build with Docker (BuildKit) or another engine that
# reads Dockerfiles. What goes into it is hack/image/spec, shared with `make image`, which
# builds the same image without a container engine: the build stage runs
# hack/image/rootfs.sh (the release binary, exactly the shared libraries it loads, Debian's
# CA bundle, the users), the final stage is that root filesystem and nothing else — no
# shell, no package manager — with the spec's configuration. tests/image.rs checks that
# this file copies exactly the spec's inputs and sets exactly its configuration.
#
#   docker build -t registry.example.com/fleetgate/fleetgate:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(git log -1 --format=%cI)" .

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# hack/image/spec's IMAGE_INPUTS.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
COPY hack/image ./hack/image
# Cargo's registry and target folder persist between builds (cache mounts), so that a
# change to the sources rebuilds fleetgate alone, with no stub targets to keep in step
# with Cargo.toml.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    hack/image/rootfs.sh /rootfs

FROM scratch
COPY --from=build /rootfs /
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="fleetgate" \
      org.opencontainers.image.description="Manage a fleet of machines from git, with a person approving every plan" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
ENV PATH="/usr/local/bin" \
    HOME="/home/nonroot" \
    SSL_CERT_FILE="/etc/ssl/certs/ca-certificates.crt"
USER 65532:65532
WORKDIR /
ENTRYPOINT ["/usr/local/bin/fleetgate"]
CMD ["controller"]
