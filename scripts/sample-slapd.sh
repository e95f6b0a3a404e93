# Sourced by demo.sh and serve-demo.sh: start_sample_slapd VAR starts a
# throwaway slapd on 127.0.0.1:3890 with examples/directory/sample.ldif and
# the reader account (its password written to VAR/reader.pw), waits until
# it answers, and stops it when the calling script exits.
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
