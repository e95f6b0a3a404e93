# Sourced by demo.sh and serve-demo.sh.
#
# start_sample_slapd VAR starts a throwaway slapd on 127.0.0.1:3890 with
# examples/directory/sample.ldif and the reader account (its password
# written to VAR/reader.pw), waits until it answers, and stops it when the
# calling script exits.
start_sample_slapd() {
	local var=$1
	go build -o bin/devslapd ./host/internal/cmd/devslapd
	bin/devslapd -port 3890 -log-level none \
		-bind-dn cn=reader,dc=example,dc=com -bind-password reader-secret \
		-password-file "$var/reader.pw" -env "$var/slapd.env" \
		examples/directory/sample.ldif >"$var/devslapd.out" 2>&1 &
	slapd_pid=$!
	trap 'kill $slapd_pid 2>/dev/null; wait $slapd_pid 2>/dev/null || true' EXIT
	for _ in $(seq 1 300); do
		[ -s "$var/slapd.env" ] && return 0
		kill -0 $slapd_pid 2>/dev/null || { cat "$var/devslapd.out" >&2; exit 1; }
		sleep 0.1
	done
	echo "slapd did not start" >&2
	cat "$var/devslapd.out" >&2
	exit 1
}

# write_serve_config DIR MANIFEST writes DIR/dirsync.toml for dirsync serve
# over the sample directory (store DIR/dirsync.db, interval 1m, the page and
# API on 127.0.0.1:8425) with a fresh demo admin token, of which only the
# SHA-256 goes into the file; the token is left in $token. MANIFEST is the
# policy manifest's path relative to DIR.
write_serve_config() {
	local dir=$1 manifest=$2
	token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	local hash
	hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/secret.key"
	chmod 600 "$dir/secret.key"
	cat >"$dir/dirsync.toml" <<TOML
# Written by scripts/sample-slapd.sh; paths are relative to this file.
[store]
dsn = "dirsync.db"

[plugins]
manifest  = "$manifest"
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
live          = true
  [domain.ldap]
  urls          = ["ldap://127.0.0.1:3890"]
  bind_dn       = "cn=reader,dc=example,dc=com"
  password_file = "reader.pw"
  base_dn       = "dc=example,dc=com"
TOML
}

# serve_sample CONFIG prints how to reach dirsync serve and runs it until
# Ctrl-C.
serve_sample() {
	cat <<MSG

dirsync serve on http://127.0.0.1:8425 — the demo admin token:

    export DIRSYNC_TOKEN=$token

The LDAP Connection page: open http://127.0.0.1:8425/ and sign in with it.

Try (README, "The API"):

    curl -s -H "Authorization: Bearer \$DIRSYNC_TOKEN" http://127.0.0.1:8425/api/v1/domains
    curl -s -H "Authorization: Bearer \$DIRSYNC_TOKEN" -X POST http://127.0.0.1:8425/api/v1/domains/example.com/runs -d '{}'
    curl -s -H "Authorization: Bearer \$DIRSYNC_TOKEN" http://127.0.0.1:8425/api/v1/domains/example.com/runs
    curl -s http://127.0.0.1:8425/metrics | grep ^dirsync_runs_total

The domain syncs every minute, and live: a change in the directory is in
the store within seconds. Add a new hire and look for her mailbox:

    . $(dirname "$1")/slapd.env
    ldapadd -x -H "\$URL" -D "\$ADMIN_DN" -y "\$ADMIN_PASSWORD_FILE" -f examples/directory/new-user.ldif
    bin/dirsync --config $1 mailbox list --domain example.com | grep judy

Ctrl-C stops dirsync serve and slapd.

MSG
	bin/dirsync --config "$1" serve || true
}
