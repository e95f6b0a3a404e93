#!/usr/bin/env bash
# make replicas-demo: three `dirsync serve` replicas on one throwaway
# PostgreSQL and the sample slapd, all on this machine. It adds the domain
# example.com (synced every 10s), shows which replica ran each run, kills
# one replica with SIGKILL and shows another take its domain over; then,
# from a terminal, it serves until Ctrl-C (DEMO_SERVE=0: it stops there).
set -euo pipefail
cd "$(dirname "$0")/.."
var=examples/demo/var/replicas
rm -rf "$var"
mkdir -p "$var"
var=$(cd "$var" && pwd)

. scripts/sample-slapd.sh
start_sample_slapd "$var"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[ ${#pids[@]} -gt 0 ] && { wait "${pids[@]}" 2>/dev/null || true; }
	[ -n "${pgdata:-}" ] && as_pg "$pgbin/pg_ctl" stop -D "$pgdata" -m fast -s >/dev/null 2>&1 || true
	[ -n "${pgdir:-}" ] && rm -rf "$pgdir"
	kill $slapd_pid 2>/dev/null
	wait $slapd_pid 2>/dev/null || true
}
trap cleanup EXIT

# A throwaway PostgreSQL on 127.0.0.1:5433 (Debian's postgresql; as the
# postgres user when run as root, since PostgreSQL refuses root).
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$pgbin" ] || pgbin=$(dirname "$(command -v initdb)")
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pgdir=$(mktemp -d /tmp/dirsync-replicas-pg.XXXXXX)
pgdata=$pgdir/data
[ "$(id -u)" = 0 ] && chown postgres: "$pgdir"
pgpw=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$pgpw" >"$pgdir/pw"
[ "$(id -u)" = 0 ] && chown postgres: "$pgdir/pw"
as_pg "$pgbin/initdb" -D "$pgdata" -U dirsync --pwfile "$pgdir/pw" --auth-host scram-sha-256 --auth-local trust \
	-E UTF8 --locale C >"$var/initdb.log" 2>&1 || { cat "$var/initdb.log" >&2; exit 1; }
as_pg "$pgbin/pg_ctl" start -D "$pgdata" -l "$pgdir/postgres.log" -w -s \
	-o "-p 5433 -c listen_addresses=127.0.0.1 -c unix_socket_directories=$pgdir" ||
	{ cat "$pgdir/postgres.log" >&2; exit 1; }
printf '%s\n' "$pgpw" >"$var/store.pw"
chmod 600 "$var/store.pw"
echo "PostgreSQL on 127.0.0.1:5433"

# Three replicas: examples/deploy/replicas/dirsync.toml with this demo's
# store, paths and ports (8431, 8432, 8433), and one demo token.
write_serve_config "$var" "../../../../plugin.toml" # the token and secret.key
hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
for i in 1 2 3; do
	sed -e "s|^dsn .*|dsn           = \"postgres://dirsync@127.0.0.1:5433/postgres?sslmode=disable\"|" \
		-e "s|^password_file .*|password_file = \"store.pw\"|" \
		-e "s|^manifest .*|manifest = \"../../../../plugin.toml\"|" \
		-e "s|^lease_ttl .*|lease_ttl           = \"5s\"|" \
		-e "s|^listen .*|listen = \"127.0.0.1:843$i\"|" \
		-e "s|^sha256 .*|sha256  = \"$hash\"|" \
		-e "s|^key_file .*|key_file = \"secret.key\"|" \
		examples/deploy/replicas/dirsync.toml >"$var/replica$i.toml"
done
ds() { bin/dirsync --config "$var/replica1.toml" "$@"; }

# The domain is kept in the store, so every replica has it; its gateway
# groups are made by hand before its first sync (R4).
ds domain add example.com policy=standard sync=true interval=10s alias_domains='["example.org"]' \
	'ldap.urls=["ldap://127.0.0.1:3890"]' ldap.bind_dn=cn=reader,dc=example,dc=com \
	ldap.base_dn=dc=example,dc=com --password-file "$var/reader.pw" >/dev/null
ds group add --domain example.com Sales >/dev/null

for i in 1 2 3; do
	bin/dirsync --config "$var/replica$i.toml" serve >"$var/replica$i.log" 2>&1 &
	pids+=($!)
	echo "replica $i: pid ${pids[-1]}, http://127.0.0.1:843$i/"
done

runs() {
	echo
	echo "runs of example.com (newest first; the holder names the replica's pid):"
	ds runs --domain example.com --json --limit 8 |
		sed -n 's/^    "\(id\|started\|outcome\|holder\)": \(.*\),$/\1=\2/p' | paste -d' ' - - - - | sed 's/^/  /'
}
sleep 25
runs

victim=""
for i in 0 1 2; do
	if ds runs --domain example.com --json --limit 1 | grep -q "pid ${pids[$i]} "; then victim=$i; fi
done
victim=${victim:-0}
echo
echo "killing replica $((victim + 1)) (pid ${pids[$victim]}) with SIGKILL; its lease expires within lease_ttl (5s)"
kill -9 "${pids[$victim]}"
sleep 20
runs

echo
echo "Every run above was made by one replica at a time; after the kill the others went on."
if [ -t 1 ] && [ "${DEMO_SERVE:-1}" != 0 ]; then
	echo "The two replicas left serve the page and API with token $token; Ctrl-C stops everything."
	wait
fi
