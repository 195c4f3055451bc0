# shellcheck shell=bash
# Shared by hack/bench/router.sh, http.sh, multicast.sh and mesh.sh
# (sourced, not run): the checks of what a run needs, the guest
# halt-polling switch, the work directory and its cleanup, logging, ports,
# waits, CPU accounting, the readers of wrk's and iperf3's output, ratios
# and verdicts, and the openssl certificates of the haproxy pair. The sourcing script sets
# first BIN (the built binaries), BENCH_NAME (the work directory's prefix),
# BENCH_TOOLS (the commands it runs), BENCH_BINS (the binaries of BIN it
# runs) and BENCH_MAKE (the make target that builds and runs it); PIDS
# collects the background processes that cleanup kills. T is BENCH_TIME,
# the seconds per run (default 5).

T=${BENCH_TIME:-5}
[[ $T =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_TIME must be a whole number of seconds, got $T" >&2; exit 2; }
missing=()
for t in "${BENCH_TOOLS[@]}"; do
	command -v "$t" >/dev/null || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "missing tools: ${missing[*]}; install them with hack/install-deps.sh (as root)" >&2
	exit 1
fi
for b in "${BENCH_BINS[@]}"; do
	[ -x "$BIN/$b" ] || { echo "missing $BIN/$b; run make build (make $BENCH_MAKE does)" >&2; exit 1; }
done

HALT_POLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
HALT_POLL_OLD=
if [ -n "${BENCH_HALT_POLL_NS:-}" ]; then
	[[ $BENCH_HALT_POLL_NS =~ ^[0-9]+$ ]] || { echo "BENCH_HALT_POLL_NS must be a whole number of nanoseconds, got $BENCH_HALT_POLL_NS" >&2; exit 2; }
	[ -w "$HALT_POLL" ] || { echo "BENCH_HALT_POLL_NS: $HALT_POLL is not writable (needs root and the haltpoll cpuidle driver)" >&2; exit 2; }
	HALT_POLL_OLD=$(<"$HALT_POLL")
fi
# idle_setup: the cpuidle driver and the guest halt polling in force.
idle_setup() {
	local d
	d=$(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo unknown)
	if [ -r "$HALT_POLL" ]; then
		echo "cpuidle driver $d, guest_halt_poll_ns $(<"$HALT_POLL")"
	else
		echo "cpuidle driver $d"
	fi
}

DIR=$(mktemp -d "${TMPDIR:-/tmp}/$BENCH_NAME.XXXXXX")
PIDS=()
cleanup() {
	[ -n "$HALT_POLL_OLD" ] && echo "$HALT_POLL_OLD" >"$HALT_POLL"
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$DIR" || exit 1
[ -n "$HALT_POLL_OLD" ] && echo "$BENCH_HALT_POLL_NS" >"$HALT_POLL"

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }
# free_port: a TCP port no socket of this host uses, never one handed out
# before in this run, and below the kernel's ephemeral range (32768 and
# up by default; ip_local_port_range): the ports are picked before anything binds them, and a port that
# was free a moment ago may meanwhile be the source port of an outgoing
# connection (a gateway dialling its link), which a listener then cannot
# bind.
EPHEMERAL_LO=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$EPHEMERAL_LO" -gt 11000 ] || EPHEMERAL_LO=32768 # no room below it: the default's bound, and the risk
free_port() {
	local p
	while :; do
		p=$((10000 + RANDOM % (EPHEMERAL_LO - 10000)))
		grep -qx "$p" "$DIR/ports.used" 2>/dev/null && continue
		[ -z "$(ss -Htan "sport = :$p")" ] && break
	done
	echo "$p" >>"$DIR/ports.used"
	echo "$p"
}
wait_listen() { # port: until something listens on 127.0.0.1:port
	for _ in $(seq 1 100); do
		[ -n "$(ss -Hltn "sport = :$1")" ] && return 0
		sleep 0.1
	done
	die "nothing listens on port $1"
}
cpu_ticks() { local s; s=$(<"/proc/$1/stat"); s=${s##*) }; awk '{print $12 + $13}' <<<"$s"; } # utime+stime of all threads
machine_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat; } # busy (not idle, iowait, steal), all CPUs
# shellcheck disable=SC2034 # used by the sourcing scripts
HZ=$(getconf CLK_TCK)

# wrk's output (file): requests/s, requests, latency at a percentile in
# ms, and its error lines.
wrk_rps() { awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$1"; }
wrk_reqs() { awk '/ requests in / {print $1; exit}' "$1"; }
wrk_ms() { # file percentile: latency in ms
	awk -v p="$2%" '$1 == p {v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v)
		m = (u == "us") ? v / 1000 : (u == "ms") ? v : (u == "s") ? v * 1000 : (u == "m") ? v * 60000 : -1
		printf "%.3f", m}' "$1"
}
wrk_errors() { awk '/Socket errors|Non-2xx/ {print}' "$1"; }

# iperf3 -J output (file): the receiver's total, Gbit/s and GB.
iperf_gbps() { awk '/"sum_received"/ {f = 1} f && /"bits_per_second"/ {gsub(/[^0-9.e+-]/, "", $2); printf "%.2f", $2 / 1e9; exit}' "$1"; }
iperf_gb() { awk '/"sum_received"/ {f = 1} f && /"bytes"/ {gsub(/[^0-9.e+-]/, "", $2); printf "%.3f", $2 / 1e9; exit}' "$1"; }

# ratio A B: A/B to 2 places, or "-" when either is missing ("" or "-")
# or B is 0.
ratio() {
	awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {if (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b}'
}
# verdict VALUE OP TARGET: "yes" or "**no**" for VALUE OP TARGET (OP is
# >=, <= or <), "?" when either is missing.
verdict() {
	awk -v v="${1:-}" -v op="$2" -v t="${3:-}" 'BEGIN {if (v == "" || t == "") {print "?"; exit}
		ok = (op == ">=") ? v + 0 >= t : (op == "<=") ? v + 0 <= t : v + 0 < t; print ok ? "yes" : "**no**"}'
}

# hold_idle OUT ON_HOLD ON_AFTER CMD...: runs CMD (a skiff-loadgen hold)
# in the background, output to OUT; evaluates ON_HOLD a second after every
# connection is established and ON_AFTER 3 s after CMD ended. A failed
# hold is printed and sets FAILED.
hold_idle() {
	local out=$1 on_hold=$2 on_after=$3 hp
	shift 3
	"$@" >"$out" 2>&1 &
	hp=$!
	PIDS+=("$hp")
	for _ in $(seq 1 400); do grep -q '^established' "$out" && break; kill -0 "$hp" 2>/dev/null || break; sleep 0.1; done
	if grep -q '^established' "$out"; then
		sleep 1
		eval "$on_hold"
	fi
	if ! wait "$hp"; then
		echo "bench: holding idle connections failed ($out):" >&2
		cat "$out" >&2
		# shellcheck disable=SC2034 # the sourcing script's
		FAILED=1
	fi
	sleep 3
	eval "$on_after"
}

now_us() { echo "${EPOCHREALTIME/./}"; }

# certificates: an ECDSA P-256 CA, and a server and a client certificate
# for 127.0.0.1, as ca.pem, server.pem and client.pem (certificate and key)
# in the work directory.
certificates() {
	{
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
		openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=skiff bench CA" \
			-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign -out ca.pem
		for n in server client; do
			openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$n.key"
			openssl req -new -key "$n.key" -subj "/CN=bench-$n" -out "$n.csr"
			printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=%sAuth\n' "$n" >"$n.ext"
			openssl x509 -req -in "$n.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 -extfile "$n.ext" -out "$n.crt"
			cat "$n.crt" "$n.key" >"$n.pem"
		done
	} >openssl.log 2>&1 || { cat openssl.log >&2; die "openssl failed"; }
}

# start_gateways runs the east and west gateways from east.yaml and
# west.yaml (MPORT: each one's /metrics port; EAST_PID, WEST_PID), then
# checks that they and the haproxy pair (HA_PID, HB_PID) still run.
start_gateways() {
	declare -gA MPORT
	local s x
	for s in east west; do
		MPORT[$s]=$(free_port)
		"$BIN/skiff-router" gateway --site-file $s.yaml \
			--metrics-bind-address "127.0.0.1:${MPORT[$s]}" --health-probe-bind-address 0 \
			--max-procs "${BENCH_MAX_PROCS:-0}" 2>$s.log &
		PIDS+=($!)
		eval "${s^^}_PID=$!"
	done
	sleep 0.5
	for x in haproxy-a:$HA_PID haproxy-b:$HB_PID east:$EAST_PID west:$WEST_PID; do
		kill -0 "${x#*:}" 2>/dev/null || { tail -n 5 "${x%%:*}.log" >&2; die "${x%%:*} exited"; }
	done
}
