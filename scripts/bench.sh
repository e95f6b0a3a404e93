#!/usr/bin/env bash
# make bench: generate N users (default 100000) and N/100 groups, load them
# into a throwaway slapd, and time ldapsearch (the floor) and dirsync syncs
# with each policy runtime, ROUNDS (default 3) times.
set -euo pipefail
cd "$(dirname "$0")/.."
go run ./host/internal/cmd/bench -n "${N:-100000}" -rounds "${ROUNDS:-3}" -dirsync bin/dirsync \
	-wasm plugins/standard/standard.wasm -plugin plugins/standard/standard
