# Sourced by the benchmark scripts: a demo directory (slapd with sample users, started by
# cmd/demo without a proxy of its own) and the part of a proxy configuration that points
# at it. Needs $bin, a scratch directory holding the built cmd/demo (bench_setup makes it).

# bench_setup CMD...: makes $bin, a scratch directory, and builds ./cmd/CMD into it for
# each CMD; on exit the processes listed in $pids and $demo_pid are stopped and $bin
# removed.
bench_setup() {
	bin=$(mktemp -d)
	pids=()
	trap 'for p in "${pids[@]}" ${demo_pid:-}; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$bin"' EXIT
	for c in "$@"; do
		go build -o "$bin/$c" "./cmd/$c"
	done
}

# start_directory USERS GROUPS PORT: starts slapd with USERS users and GROUPS groups, the
# demo's own listeners on PORT (plain), PORT+1 (LDAPS) and PORT+2 (metrics), and sets
# demo_pid, slapd_url (ldap://host:port) and slapd_addr (host:port).
start_directory() {
	"$bin/demo" -users "$1" -groups "$2" -mode direct -no-sync -listen "127.0.0.1:$3" \
		-listen-tls "127.0.0.1:$(($3 + 1))" -http "127.0.0.1:$(($3 + 2))" -log-level warn >"$bin/demo.out" 2>&1 &
	demo_pid=$!
	for _ in $(seq 900); do grep -q "Press Ctrl-C" "$bin/demo.out" 2>/dev/null && break; sleep 0.2; done
	slapd_url=$(grep -o 'in front of ldap://[0-9.:]*' "$bin/demo.out" | sed 's/in front of //' || true)
	[ -n "$slapd_url" ] || { cat "$bin/demo.out" >&2; return 1; }
	slapd_addr=${slapd_url#ldap://}
}

# upstream_config STORE: the upstream, store, sync and log sections of a configuration
# for the directory start_directory started, with the store at STORE.
upstream_config() {
	cat <<YAML
upstream:
  urls: "$slapd_url"
  bind_dn: "cn=svc,ou=services,dc=example,dc=org"
  bind_password: "svc-secret"
  base_dn: "dc=example,dc=org"
  timeout: 30s
store:
  path: "$1"
sync:
  preset: openldap
log: {level: warn, format: text}
YAML
}
