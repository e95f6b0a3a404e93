#!/usr/bin/env bash
# make demo: start a throwaway slapd with examples/directory/sample.ldif,
# sync it into a fresh SQLite store with bin/dirsync, show the result, stop.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=examples/demo
var=$demo/var
rm -rf "$var"
mkdir -p "$var"

go build -o bin/devslapd ./host/internal/cmd/devslapd
bin/devslapd -port 3890 -log-level none \
	-bind-dn cn=reader,dc=example,dc=com -bind-password reader-secret \
	-password-file "$var/reader.pw" -env "$var/slapd.env" \
	examples/directory/sample.ldif >"$var/devslapd.out" 2>&1 &
slapd_pid=$!
trap 'kill $slapd_pid 2>/dev/null; wait $slapd_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
	[ -s "$var/slapd.env" ] && break
	kill -0 $slapd_pid 2>/dev/null || { cat "$var/devslapd.out" >&2; exit 1; }
	sleep 0.1
done
[ -s "$var/slapd.env" ] || { echo "demo: slapd did not start" >&2; cat "$var/devslapd.out" >&2; exit 1; }

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
