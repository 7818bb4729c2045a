# deletion-gateway container image.
#
# Two stages on one base: the build stage has compilers and -dev packages,
# the runtime stage only the shared libraries, CA certificates and the two
# binaries. BASE defaults to Debian 12 slim; any Debian 12 root file system
# works (the container test builds one with debootstrap).
#
#   docker build -t deletion-gateway .
#   docker run -p 8080:8080 -v dg-data:/var/lib/deletion-gateway \
#     -e EXTEND_API_TOKEN -e EXTEND_WEBHOOK_SECRET -e DG_AUDIT_KEY \
#     -e DG_ADMIN_TOKEN -e DG_CRM_SECRET deletion-gateway
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libevent-dev libssl-dev libjansson-dev \
      libsqlite3-dev libcurl4-openssl-dev libpq-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Only the two programs are built, so the test runner's python3 is not
# needed here: PYTHON3 is given to satisfy the configure step alone.
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DPYTHON3=/bin/true \
 && cmake --build /build -j"$(nproc)" --target deletion-gateway extend-sim \
 && install -m 0755 /build/deletion-gateway /build/extend-sim /usr/local/bin/ \
 && strip /usr/local/bin/deletion-gateway /usr/local/bin/extend-sim

FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libevent-2.1-7 libevent-openssl-2.1-7 libevent-pthreads-2.1-7 libssl3 \
      libjansson4 libsqlite3-0 libcurl4 libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --home-dir /var/lib/deletion-gateway \
      --no-create-home --shell /usr/sbin/nologin gateway \
 && install -d -o gateway -g gateway -m 0750 /var/lib/deletion-gateway \
 && install -d -m 0755 /etc/deletion-gateway
COPY --from=build /usr/local/bin/deletion-gateway /usr/local/bin/extend-sim /usr/local/bin/
COPY config/gateway.container.json /etc/deletion-gateway/gateway.json
RUN chmod 0644 /etc/deletion-gateway/gateway.json

# The queue (SQLite) and the audit log live here: keep it on a volume, or
# every accepted deletion is lost with the container.
VOLUME /var/lib/deletion-gateway
USER 10001:10001
WORKDIR /var/lib/deletion-gateway
EXPOSE 8080

# The probe is the binary itself (no curl in the image). It reads the
# config CMD serves, so a mounted config with another port or TLS is
# probed where it listens; a config mounted elsewhere needs this
# overridden (--health-cmd) with its path.
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 \
  CMD ["deletion-gateway", "health", "-c", "/etc/deletion-gateway/gateway.json"]

# The gateway handles SIGTERM itself: it stops accepting, finishes or
# releases in-flight work, and exits 0; the queue keeps the rest.
STOPSIGNAL SIGTERM
ENTRYPOINT ["deletion-gateway"]
CMD ["serve", "-c", "/etc/deletion-gateway/gateway.json"]
