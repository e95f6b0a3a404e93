#!/usr/bin/env bash
# make bench: generate N users (default 100000) and N/100 groups, load them
# into a throwaway slapd (with syncprov), and time ldapsearch (the floor)
# and dirsync's syncs with each policy runtime, ROUNDS (default 3) times: a
# first sync, unchanged full and delta resyncs, a delta after 1,000 users
# changed, and the latency of live changes through dirsync serve (builtin
# and wasm). RUNTIMES (default builtin,wasm,process,postgres) picks the
# runtimes; BENCH_FLAGS passes more flags (go run ./host/internal/cmd/bench
# -help).
set -euo pipefail
cd "$(dirname "$0")/.."
# Build the bench once, so that `go run`'s compile is not part of the run.
go build -o bin/bench ./host/internal/cmd/bench
# shellcheck disable=SC2086 # BENCH_FLAGS is a list of flags
exec bin/bench -n "${N:-100000}" -rounds "${ROUNDS:-3}" -runtimes "${RUNTIMES:-builtin,wasm,process,postgres}" \
	-dirsync bin/dirsync -wasm plugins/standard/standard.wasm -plugin plugins/standard/standard ${BENCH_FLAGS:-}
