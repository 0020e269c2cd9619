# Strata build, test and tooling. Everything a fresh machine needs beyond Go is
# installed by these targets, pinned, into the git-ignored .tools/ folder.

GO            ?= go
BIN_DIR       := $(CURDIR)/bin
TOOLS_BIN     := $(CURDIR)/.tools/bin
# The real Prometheus used by tests and the demo: the same module version as go.mod.
PROMETHEUS_VERSION := $(shell $(GO) list -m -f '{{.Version}}' github.com/prometheus/prometheus)
MINIO_VERSION      := v0.0.0-20260212201848-7aac2a2c5b7c
# A real Thanos, for the tests that prove Thanos and Strata read each other's
# blocks: the version test/compat compares the wire types with.
THANOS_VERSION     := v0.41.0
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -X github.com/prometheus/common/version.Version=$(VERSION) -X github.com/prometheus/common/version.Revision=$(shell git rev-parse HEAD 2>/dev/null) -X github.com/prometheus/common/version.Branch=main
BINARIES      := sidecar store querier compactor blockgen
TEST_TIMEOUT  ?= 60m

export PATH := $(TOOLS_BIN):$(PATH)

.PHONY: all build test compat-test lint proto bench tools minio demo docs clean

all: build

build:
	@mkdir -p $(BIN_DIR)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN_DIR)/ $(addprefix ./cmd/,$(BINARIES))

# Everything CI runs: unit, integration and end-to-end tests with real processes.
test: tools build
	STRATA_TOOLS_BIN=$(TOOLS_BIN) STRATA_BIN_DIR=$(BIN_DIR) $(GO) test -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) compat-test

# Wire compatibility with Thanos' own generated types, in a module of its own.
compat-test:
	cd test/compat && $(GO) test -tags slicelabels -count=1 ./...

# chunkenc.Iterator's Seek(int64) ValueType is not io.Seeker; Prometheus
# silences the same vet check.
VET_FLAGS := -stdmethods=false

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needs to run on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(VET_FLAGS) ./...
	cd test/compat && $(GO) vet $(VET_FLAGS) -tags slicelabels ./...

# Regenerates api/ from api/proto/*.proto with buf and the pinned plugins (go.mod tool entries).
proto:
	$(GO) tool buf generate

# Every benchmark of the module, then how long it all took against the
# 10-minute budget (tools and build are done before the clock starts).
bench: tools build
	@start=$$(date +%s); \
	STRATA_TOOLS_BIN=$(TOOLS_BIN) STRATA_BIN_DIR=$(BIN_DIR) STRATA_THANOS_VERSION=$(THANOS_VERSION) $(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...; rc=$$?; \
	took=$$(( $$(date +%s) - start )); \
	if [ $$took -lt 600 ]; then verdict="within"; else verdict="OVER"; fi; \
	echo "make bench: all benchmarks ran in $$((took / 60))m$$((took % 60))s, $$verdict the 10-minute budget"; \
	exit $$rc

# The real Prometheus (and promtool) and MinIO, built from source with go install.
tools: $(TOOLS_BIN)/prometheus $(TOOLS_BIN)/promtool $(TOOLS_BIN)/minio $(TOOLS_BIN)/thanos

$(TOOLS_BIN)/prometheus $(TOOLS_BIN)/promtool:
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/prometheus/prometheus/cmd/prometheus@$(PROMETHEUS_VERSION) github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_VERSION)

$(TOOLS_BIN)/minio:
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/minio/minio@$(MINIO_VERSION)

# Thanos' go.mod has replace directives, which go install refuses: build it
# inside its downloaded module instead, where they apply. Thanos casts
# labels.Labels to its protobuf label slices unsafely: it needs slicelabels.
$(TOOLS_BIN)/thanos:
	@mkdir -p $(TOOLS_BIN)
	cd "$$($(GO) mod download -json github.com/thanos-io/thanos@$(THANOS_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')" && \
		GOFLAGS=-mod=mod $(GO) build -tags slicelabels -o $(TOOLS_BIN)/thanos ./cmd/thanos

# The whole system on 127.0.0.1 over a filesystem bucket (DEMO_OBJSTORE=<file>
# for another objstore config); Ctrl-C stops it.
demo: build tools
	bash examples/demo/demo.sh

# A MinIO for the demo on 127.0.0.1:9000 (bucket "demo"); writes
# .demo/minio-objstore.yml to pass as DEMO_OBJSTORE.
minio: tools
	mkdir -p .demo/minio/demo
	printf 'type: S3\nconfig:\n  bucket: demo\n  endpoint: 127.0.0.1:9000\n  access_key: strata-demo\n  secret_key: strata-demo-secret\n  insecure: true\n' > .demo/minio-objstore.yml
	@echo "DEMO_OBJSTORE=$(CURDIR)/.demo/minio-objstore.yml make demo   # in another terminal"
	MINIO_ROOT_USER=strata-demo MINIO_ROOT_PASSWORD=strata-demo-secret MINIO_BROWSER=off $(TOOLS_BIN)/minio server .demo/minio --address 127.0.0.1:9000 --console-address 127.0.0.1:9001

# Regenerates the flag reference in docs/components from the binaries' --help.
docs: build
	STRATA_BIN_DIR=$(BIN_DIR) $(GO) test ./docs -run TestFlagReferenceIsCurrent -update -count=1

clean:
	rm -rf $(BIN_DIR)
