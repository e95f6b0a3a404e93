# dirsync — see README.md.
GO      ?= go
BIN     := bin/dirsync
WASM    := plugins/standard/standard.wasm
N       ?= 100000
ROUNDS  ?= 3
DOMAINS ?= 1000
USERS   ?= 5
DURATION ?= 150s
INTERVAL ?= 1m
CONCURRENCY ?= 2

.PHONY: all build deps deps-ldap deps-ldap-pg test bench loadbench demo serve-demo replicas-demo proto generate testdata vet fmt clean FORCE

all: build

build: $(BIN) $(WASM) plugins/standard/standard

$(BIN): FORCE
	$(GO) build -o $@ ./host/cmd/dirsync

# The standard policy as a WebAssembly reactor module.
$(WASM): FORCE
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o $@ ./plugins/standard/cmd/standard

# The same policy source as a native go-plugin process (runtime = "process").
plugins/standard/standard: FORCE
	$(GO) build -o $@ ./plugins/standard/cmd/standard

# Debian packages the tests and benchmarks need (slapd, ldap-utils, Samba
# AD DC, chromium, postgresql); the demo needs only the OpenLDAP ones, the
# benchmark those and postgresql.
deps:
	bash scripts/deps.sh

deps-ldap:
	bash scripts/deps.sh --ldap-only

deps-ldap-pg:
	bash scripts/deps.sh --ldap-pg

test: deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

# Syncs the sample directory in examples/directory from a throwaway slapd
# into the embedded SQLite store and shows the result.
demo: deps-ldap build
	bash scripts/demo.sh

# Starts the sample slapd and dirsync serve (interval 1m) with a demo admin
# token printed on screen; Ctrl-C stops both.
serve-demo: deps-ldap build
	bash scripts/serve-demo.sh

# Reads N users (default 100000) with ldapsearch and syncs them with dirsync
# and each policy runtime into SQLite, and with the builtin one into a
# throwaway PostgreSQL, ROUNDS (default 3) times: first sync, unchanged full
# and delta resyncs, a delta after 1,000 users changed, and (builtin, wasm)
# the latency of live changes through dirsync serve. RUNTIMES=builtin,wasm
# picks runtimes; BENCH_FLAGS passes more flags to the bench program.
bench: deps-ldap-pg build
	N=$(N) ROUNDS=$(ROUNDS) RUNTIMES=$(RUNTIMES) BENCH_FLAGS='$(BENCH_FLAGS)' bash scripts/bench.sh

# Three dirsync serve replicas on one throwaway PostgreSQL and the sample
# slapd: which replica runs each run, and a takeover after one is killed.
replicas-demo: deps-ldap-pg build
	bash scripts/replicas-demo.sh

# Makes DOMAINS (default 1000) store-kept domains of USERS (default 5) users,
# all on one throwaway slapd, through the API of dirsync serve, which syncs
# them every INTERVAL (default 1m), CONCURRENCY (default 2) at once, for
# DURATION (default 150s) while a few clients read the API; then checks the
# run records (overlaps, runs in flight, spread of starts) and reports.
loadbench: deps-ldap build
	DOMAINS=$(DOMAINS) USERS=$(USERS) DURATION=$(DURATION) INTERVAL=$(INTERVAL) \
		CONCURRENCY=$(CONCURRENCY) bash scripts/loadbench.sh

# Regenerates the ABI's protobuf and gRPC code (needs protoc, protoc-gen-go
# v1.36.12 and protoc-gen-go-grpc v1.6.2, installed with go install).
proto:
	bash sdk/proto/gen.sh

# Regenerates the admin API's server code (host/api/internal/gen) from its
# OpenAPI document host/api/openapi.yaml, with the oapi-codegen version that
# go.mod pins as a tool.
generate:
	$(GO) generate ./host/api/...

# The test modules of package interrupt, from their WebAssembly text
# (wat2wasm: Debian's wabt package); the .wasm files are committed.
testdata:
	for f in host/internal/wasmrt/interrupt/testdata/*.wat; do wat2wasm "$$f" -o "$${f%.wat}.wasm"; done

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin var $(WASM)
