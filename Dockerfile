# syntax=docker/dockerfile:1
# Multi-stage build: a static, non-root sftpgw image with no shell.
FROM golang:1.26-bookworm AS build
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
EXPOSE 2222 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/sftpgw", "health", "--url", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["/usr/local/bin/sftpgw"]
CMD ["serve", "--config", "/etc/sftpgw/sftpgw.hcl"]
