#!/usr/bin/env bash
# make bench: generate N users (default 100000) and N/100 groups, load them
# into a throwaway slapd (with syncprov), and time ldapsearch (the floor)
# and dirsync's syncs with each policy runtime, ROUNDS (default 3) times: a
# first sync, unchanged full and delta resyncs, a delta after 1,000 users
# changed, and the latency of live changes through dirsync serve (builtin
# and wasm). RUNTIMES (default builtin,wasm,process,postgres) picks the
# runtimes; BENCH_FLAGS passes more flags (bin/bench -help).
set -euo pipefail
cd "$(dirname "$0")/.."
# The run uses its own copy of the programs just built, so that a `make
# build` meanwhile (a long run takes many minutes) does not change what is
# measured halfway.
snap=$(mktemp -d /tmp/dirsync-bench-bin.XXXXXX)
trap 'rm -rf "$snap"' EXIT
cp bin/dirsync plugins/standard/standard.wasm plugins/standard/standard "$snap/"
go build -o "$snap/bench" ./host/internal/cmd/bench
echo "programs: bin/dirsync $(date -u -r bin/dirsync +%FT%TZ), copied to $snap"
# shellcheck disable=SC2086 # BENCH_FLAGS is a list of flags
"$snap/bench" -n "${N:-100000}" -rounds "${ROUNDS:-3}" -runtimes "${RUNTIMES:-builtin,wasm,process,postgres}" \
	-dirsync "$snap/dirsync" -wasm "$snap/standard.wasm" -plugin "$snap/standard" ${BENCH_FLAGS:-}
