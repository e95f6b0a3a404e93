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

# A demo admin token: only its SHA-256 goes into the config.
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$var/secret.key"
chmod 600 "$var/secret.key"
cat >"$var/dirsync.toml" <<TOML
# Written by scripts/serve-demo.sh; paths are relative to this file.
[store]
dsn = "dirsync.db"

[plugins]
manifest  = "../../../../plugin.toml"
cache_dir = "cache"

[serve]
max_concurrent_runs = 2

[api]
listen = "127.0.0.1:8425"

[[api.token]]
name    = "demo-admin"
sha256  = "$hash"
role    = "admin"
domains = ["*"]

[secrets]
key_file = "secret.key"

[[domain]]
name          = "example.com"
sync          = true
policy        = "standard"
alias_domains = ["example.org"]
interval      = "1m"
  [domain.ldap]
  urls          = ["ldap://127.0.0.1:3890"]
  bind_dn       = "cn=reader,dc=example,dc=com"
  password_file = "reader.pw"
  base_dn       = "dc=example,dc=com"
TOML

ds() { bin/dirsync --config "$var/dirsync.toml" "$@"; }
# Gateway groups are made by hand before the first sync (R4).
ds group add --domain example.com Sales >/dev/null
ds group add --domain example.com Engineering >/dev/null
ds group add --domain example.com "All Staff" >/dev/null

cat <<MSG

dirsync serve on http://127.0.0.1:8425 — the demo admin token:

    export DIRSYNC_TOKEN=$token

The LDAP Connection page: open http://127.0.0.1:8425/ and sign in with it.

Try (README, "The API"):

    curl -s -H "Authorization: Bearer \$DIRSYNC_TOKEN" http://127.0.0.1:8425/api/v1/domains
    curl -s -H "Authorization: Bearer \$DIRSYNC_TOKEN" -X POST http://127.0.0.1:8425/api/v1/domains/example.com/runs -d '{}'
    curl -s -H "Authorization: Bearer \$DIRSYNC_TOKEN" http://127.0.0.1:8425/api/v1/domains/example.com/runs
    curl -s http://127.0.0.1:8425/metrics | grep ^dirsync_runs_total

The domain syncs every minute; Ctrl-C stops dirsync serve and slapd.

MSG
bin/dirsync --config "$var/dirsync.toml" serve || true
