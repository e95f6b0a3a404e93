#!/usr/bin/env bash
# make loadbench: generate DOMAINS (default 1000) OUs of USERS (default 5)
# users in one throwaway slapd, make each a store-kept domain through the API
# of `dirsync serve` (interval INTERVAL, default 1m; max_concurrent_runs
# CONCURRENCY, default 2), let serve sync them for DURATION (default 150s)
# while a few clients read the API, then check the run records: overlaps,
# runs in flight, how starts spread over the interval, runs per interval,
# API latency and serve's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
go run ./host/internal/cmd/loadbench -domains "${DOMAINS:-1000}" -users "${USERS:-5}" \
	-duration "${DURATION:-150s}" -interval "${INTERVAL:-1m}" -concurrency "${CONCURRENCY:-2}" \
	-dirsync bin/dirsync
