#!/usr/bin/env bash
# Installs the Debian packages dirsync's demo, tests and benchmarks need
# when they are missing: slapd and ldap-utils (OpenLDAP), and a Samba AD
# domain controller (samba, samba-ad-dc, samba-ad-provision,
# samba-dsdb-modules) for the Active Directory tests, chromium for the
# tests that drive the page in a headless browser, and postgresql (initdb,
# postgres and pg_ctl under /usr/lib/postgresql/VERSION/bin) for the tests
# and benchmarks of the PostgreSQL store, which start a throwaway server.
# Needs root and apt. With --ldap-only (make demo) it installs only the
# OpenLDAP packages; with --ldap-pg (make bench) those and postgresql.
set -euo pipefail
ldap_only=false
want_pg=true
case "${1:-}" in
--ldap-only) ldap_only=true want_pg=false ;;
--ldap-pg) ldap_only=true ;;
esac
missing=()
[ -x /usr/sbin/slapd ] || missing+=(slapd)
command -v ldapsearch >/dev/null 2>&1 || missing+=(ldap-utils)
samba=(samba samba-ad-dc samba-ad-provision samba-dsdb-modules)
# The page tests' browser (Debian's chromium).
$ldap_only || command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The PostgreSQL store's throwaway servers (Debian's postgresql).
$want_pg && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && ! command -v initdb >/dev/null 2>&1 && missing+=(postgresql)
if $ldap_only; then
	:
elif command -v dpkg-query >/dev/null 2>&1; then
	for p in "${samba[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
elif ! { [ -x /usr/sbin/samba ] || command -v samba >/dev/null 2>&1; } || ! command -v samba-tool >/dev/null 2>&1; then
	missing+=("${samba[@]}")
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps: ${missing[*]} missing; install them with: sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# apt's output (and debconf's notes) only when something fails.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
	cat "$log" >&2
	echo "deps: installing ${missing[*]} failed" >&2
	exit 1
fi
