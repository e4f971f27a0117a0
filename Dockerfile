# syntax=docker/dockerfile:1
# kiln's own image: kiln builds it (tests/self_hosting.rs), and so does any
# BuildKit. By default the binary is compiled from this repository in a
# Rust stage; `--build-arg BINARY=prebuilt` takes target/release/kiln from
# the context instead (what the test and an offline build do).
#
# The image runs as the unprivileged user kiln (10001) with the subordinate
# ID range 100000:65536 that newuidmap/newgidmap (package uidmap) map into
# each build's user namespace. Data lives in /var/lib/kiln.
ARG RUST_IMAGE=docker.io/library/rust:1-slim-bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
ARG BINARY=compiled

FROM ${RUST_IMAGE} AS compiled
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin kiln && install -D -m 0755 target/release/kiln /out/kiln

FROM scratch AS prebuilt
COPY target/release/kiln /out/kiln

FROM ${BINARY} AS binary

FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends uidmap nftables ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin kiln \
 && echo kiln:100000:65536 > /etc/subuid \
 && echo kiln:100000:65536 > /etc/subgid \
 && install -d -o kiln -g kiln -m 0700 /var/lib/kiln
COPY --from=binary --chmod=0755 /out/kiln /usr/local/bin/kiln
ENV KILN_DATA_DIR=/var/lib/kiln
USER 10001:10001
WORKDIR /var/lib/kiln
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/kiln"]
CMD ["serve"]
