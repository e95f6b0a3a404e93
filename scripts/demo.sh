#!/usr/bin/env bash
# make demo: start a throwaway slapd with examples/directory/sample.ldif,
# sync it into a fresh SQLite store with bin/dirsync, show the result, stop.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=examples/demo
var=$demo/var
rm -rf "$var"
mkdir -p "$var"

. scripts/sample-slapd.sh
start_sample_slapd "$var"

ds() { echo "\$ dirsync $*"; bin/dirsync --config "$demo/dirsync.toml" "$@"; echo; }

# Gateway groups are made by hand before the first sync (R4); Marketing is not,
# so the directory's Marketing group stays unmatched.
ds group add --domain example.com Sales
ds group add --domain example.com Engineering
ds group add --domain example.com "All Staff"
# A hand-made mailbox: a sync never touches it (R6).
ds mailbox add --domain example.com postmaster@example.com --group Sales

ds preview --domain example.com
ds sync --domain example.com
ds mailbox list --domain example.com
ds group list --domain example.com
ds report-recipients --domain example.com
ds resolve alice@example.org
ds sync --domain example.com
ds runs --domain example.com

# From a terminal (and unless DEMO_SERVE=0) the demo goes on with dirsync
# serve over the same store: the page and the API, until Ctrl-C.
if [ -t 0 ] && [ -t 1 ] && [ "${DEMO_SERVE:-1}" != 0 ]; then
	write_serve_config "$var" "../../../plugin.toml"
	serve_sample "$var/dirsync.toml"
fi
