# scripts/lib/bench-shop.bash — sourced by scripts/bench-orders and
# scripts/bench-flash: build the release tree, then start a nats-server -js
# with a user per role (`orion nats-config --generate`, as the embedded server
# has) and its monitoring port, and `orion serve` with every role on free
# loopback ports, in a temporary directory; everything is stopped on exit,
# also on failure (trap).
#
#   bench_shop_build                 install-deps, meson setup, ninja (build-bench)
#   bench_shop_begin NAME [KEEP]     $tmp, the exit trap (logs copied to KEEP)
#   bench_shop_start_nats            $nats_pid $nats_port $monitor_port
#   bench_shop_start_orion [VAR=V ...]  $orion_pid $orion_port $nats_url (the ops
#                                    user's); VAR=V are extra settings
#   stop_pid PID, free_port, wait_port PORT
# bench_extra_pids: more processes to stop on exit (e.g. an SMTP sink).

# ORION_BIN: another orion binary to measure (an older commit's release build,
# for a before/after pair on the same box); the bench clients are this tree's.
orion=${ORION_BIN:-build-bench/cli/orion}
admin_email=bench-admin@orion.test
admin_password=bench-admin-password
tmp=""
keep=""
orion_pid=""
nats_pid=""
bench_extra_pids=()
bench_name=bench

bench_shop_build() {
	bash scripts/install-deps >&2
	if [ ! -f build-bench/build.ninja ]; then
		meson setup build-bench --buildtype=release -Dtests=false >&2
	fi
	ninja -C build-bench >&2
}

stop_pid() {
	local pid=$1
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

bench_shop_cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_pid "$orion_pid"
	stop_pid "$nats_pid"
	local pid
	for pid in "${bench_extra_pids[@]}"; do
		stop_pid "$pid"
	done
	if [ -n "$keep" ]; then
		mkdir -p "$keep"
		cp "$tmp"/*.log "$keep"/ 2>/dev/null || true
	fi
	rm -rf "$tmp"
	exit "$rc"
}

bench_shop_begin() {
	bench_name=$1
	keep=${2:-}
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/$bench_name.XXXXXX")
	trap bench_shop_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
	for _ in $(seq 200); do
		/usr/bin/python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# nats-server as orion's embedded one runs it (engine/natsd.c), plus -m
bench_shop_start_nats() {
	nats_port=$(free_port)
	monitor_port=$(free_port)
	"$orion" nats-config --generate --credentials "$tmp/nats-credentials" >"$tmp/nats-auth.conf"
	printf 'include ./nats-auth.conf\n' >"$tmp/nats.conf"
	setsid nats-server -js -a 127.0.0.1 -p "$nats_port" -m "$monitor_port" --store_dir "$tmp/js" \
		-l "$tmp/nats.log" -c "$tmp/nats.conf" </dev/null &
	nats_pid=$!
	wait_port "$nats_port" || { echo "$bench_name: nats-server did not start" >&2; exit 1; }
}

# orion serve with every role; the order limits (ADR 026) out of the way of a load
# test (the benches place more unpaid orders per customer than a person would), and
# email verification off (ADR 031: the bench's customers order right after registering)
bench_shop_start_orion() {
	orion_port=$(free_port)
	env ORION_NATS_URL="nats://127.0.0.1:$nats_port" ORION_NATS_CREDENTIALS="$tmp/nats-credentials" \
		ORION_DATA_DIR="$tmp/data" ORION_HTTP_ADDR="127.0.0.1:$orion_port" \
		ORION_ADMIN_EMAIL=$admin_email ORION_ADMIN_PASSWORD=$admin_password ORION_LOG_LEVEL=info \
		ORION_AUTH_ADDRESS_BURST=100000 ORION_AUTH_ADDRESS_PER_MINUTE=100000 \
		ORION_MAX_OPEN_ORDERS=16 ORION_MAX_UNITS_PER_PRODUCT=1000000 \
		ORION_ORDERS_BURST=100000 ORION_ORDERS_PER_MINUTE=100000 ORION_REQUIRE_EMAIL_VERIFICATION=0 "$@" \
		setsid "$orion" serve >"$tmp/orion.log" 2>&1 </dev/null &
	orion_pid=$!
	for _ in $(seq 300); do
		grep -q "Orion is running" "$tmp/orion.log" && break
		kill -0 "$orion_pid" 2>/dev/null || { cat "$tmp/orion.log" >&2; exit 1; }
		sleep 0.1
	done
	# a user per role (ADR 014): the bench listens as ops
	local ops_user ops_password
	read -r _ ops_user ops_password < <(grep '^ops ' "$tmp/nats-credentials")
	nats_url="nats://$ops_user:$ops_password@127.0.0.1:$nats_port"
}
