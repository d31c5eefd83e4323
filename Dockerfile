# syntax=docker/dockerfile:1
# Multi-stage build: a static, non-root sftpgw image with no shell.
FROM golang:1.27-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/sftpgw ./cmd/sftpgw \
 && mkdir -p /out/var/lib/sftpgw /out/etc/sftpgw

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sftpgw /usr/local/bin/sftpgw
COPY --from=build --chown=65532:65532 /out/var/lib/sftpgw /var/lib/sftpgw
# Config, users file and keys are mounted read-only at /etc/sftpgw;
# generated host/audit keys and the audit spool live in /var/lib/sftpgw.
VOLUME ["/var/lib/sftpgw"]
USER 65532:65532
# 2222: SSH/SFTP. 9090: metrics and health, only if the config has a
# metrics block; inside a container listen on "0.0.0.0:9090" to be scraped.
EXPOSE 2222 9090
# SIGTERM drains: idle sessions close, transfers get shutdown_grace (30s),
# then the audit trail is flushed. Stop with a longer timeout than that,
# e.g. `docker stop -t 60` or terminationGracePeriodSeconds: 60.
STOPSIGNAL SIGTERM
# Needs the metrics block (see above); the image has no shell or curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/sftpgw", "health", "--config", "/etc/sftpgw/sftpgw.hcl"]
ENTRYPOINT ["/usr/local/bin/sftpgw"]
CMD ["serve", "--config", "/etc/sftpgw/sftpgw.hcl"]
