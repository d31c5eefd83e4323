# sftpgw: `make demo` runs the gateway on a local directory; `make test`
# installs what the tests need (Debian clients, MinIO) and runs every test.
GO      ?= go
# The standard library of go1.26 has reachable vulnerabilities (make vulncheck):
# the go command fetches this toolchain from the module proxy once per machine.
export GOTOOLCHAIN := go1.27.3
BIN     := bin/sftpgw
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build demo test unit deps bench fuzz vulncheck mutate mutate-integration peer-test clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/sftpgw

demo: build
	./$(BIN) demo --dir ./demo-data

deps:
	./scripts/deps.sh

test: deps build
	./scripts/test.sh

vulncheck:
	./scripts/vulncheck.sh

unit:
	$(GO) test ./...

bench: deps build
	./bench/run.sh

# rclone's own SFTP backend suite against the gateway and OpenSSH
# internal-sftp (docs/rclone.md); expected failures: scripts/peer-test.expected.
peer-test: deps build
	./scripts/peer-test.sh

# The list of fuzz targets is in scripts/fuzz.sh (make test runs it for 10s each).
fuzz:
	./scripts/fuzz.sh 60s

# Mutation testing (docs/mutation.md); hours on a small machine, so not in make test.
# PKGS="vfs authn" limits it; MUTATE_WORKERS, MUTATE_OUT: see scripts/mutate.sh.
mutate:
	./scripts/mutate.sh run $(PKGS)

# The same with MinIO up, so the tests that need S3 run against the mutants too.
mutate-integration:
	./scripts/mutate.sh integration $(PKGS)

clean:
	rm -rf bin demo-data bench/results
