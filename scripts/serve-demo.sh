#!/usr/bin/env bash
# make serve-demo: start a throwaway slapd with examples/directory/sample.ldif
# and `dirsync serve` over it (interval 1m) with a fresh demo admin token,
# printed on screen. It runs until Ctrl-C, then stops slapd too.
set -euo pipefail
cd "$(dirname "$0")/.."
var=examples/demo/var/serve
rm -rf "$var"
mkdir -p "$var"

. scripts/sample-slapd.sh
start_sample_slapd "$var"

write_serve_config "$var" "../../../../plugin.toml"

ds() { bin/dirsync --config "$var/dirsync.toml" "$@"; }
# Gateway groups are made by hand before the first sync (R4).
ds group add --domain example.com Sales >/dev/null
ds group add --domain example.com Engineering >/dev/null
ds group add --domain example.com "All Staff" >/dev/null

serve_sample "$var/dirsync.toml"
