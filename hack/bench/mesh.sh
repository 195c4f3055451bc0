#!/usr/bin/env bash
# The path a user of the mesh takes, measured hop by hop in one run: a
# client in a pod (a network namespace and a cgroup, as the end-to-end
# scenario's pods are) whose connections eBPF redirects into its sidecar,
# the sidecar's member link to its gateway, the gateway, the mTLS link, the
# far gateway and the server. Beside it, in the same run, the same client
# on shorter paths and on haproxy's:
#
#   direct  pod -> server
#   far     pod -> west gateway (a listener of its own) -> server
#   gw      pod -> east gateway -mTLS link-> west gateway -> server
#   mesh    pod -eBPF-> sidecar -mTLS member link-> east -link-> west -> server
#   hfar    pod -> haproxy B -> server
#   hgw     pod -> haproxy A -mTLS 1.3-> haproxy B -> server
#   hside   pod -> haproxy S (in the pod, in the sidecar's place; plain TCP)
#                -> east -link-> west -> server
#
# The servers and gateways run in the root netns, the pod reaches them over
# a veth pair (10.79.0.1 host, 10.79.0.2 pod). The eBPF programs are loaded
# and attached with skiff-node-agent attach (Linux mode), pinned in a
# directory of the run's own; the sidecar runs as UID 1337 in the pod's
# sidecar cgroup, the clients in its app cgroup. Workloads (all TCP
# addresses): iperf3 1 and 8 streams, wrk GET against skiff-echo at 1 and
# 64 connections, and 64 with "Connection: close" (new connections/s); then
# 1,000 idle connections held through the sidecar and through haproxy S
# while their RSS is read. The CPU time of every proxy process is read from
# /proc over each run.
#
# Prints: throughput and latency per path; CPU per request and per GB per
# process; the budget per hop (p50 added by subtracting the shorter path,
# CPU of the hop's process) beside haproxy's hop; the sidecar's RSS; and
# each target with yes/no (issue: the sidecar's hop costs no more than a
# haproxy hop in p50, req/s and CPU per request; sidecar RSS < 20 MiB idle
# and < 40 MiB with 1,000 connections; the gateway chain's targets).
# Needs root (netns, cgroups, eBPF), bin/ (make build) and the Debian tools
# below. Exits 1 if a run failed.
#
# Environment:
#   BENCH_TIME    seconds per run (default 5)
#   BENCH_CONNS   idle connections held for the RSS check (default 1000)
#   BENCH_KEEP    if set, keep the work directory (logs, raw outputs)
#   BENCH_ROUTER  the skiff-router binary of the gateways and the sidecar
#                 (default bin/skiff-router): another build, to compare two
#                 builds run after run
#   BENCH_HALT_POLL_NS  as in router.sh
#   BENCH_PATHS   the paths to measure, space-separated (default all seven)
#   BENCH_LOADS   the loads to run, space-separated, of: iperf1 iperf8 wrk1
#                 wrk64 newconn hold (default all); with BENCH_PATHS, a
#                 quick before/after of one figure (BENCH_LOADS=wrk1
#                 BENCH_PATHS="gw mesh hside": the sidecar hop's p50)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	echo "hack/bench/mesh.sh needs root (network namespaces, cgroups, eBPF)" >&2
	exit 1
fi
BIN=$PWD/bin
HOLD_CONNS=${BENCH_CONNS:-1000}
[[ $HOLD_CONNS =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_CONNS must be a positive integer, got $HOLD_CONNS" >&2; exit 2; }
BENCH_NAME=skiff-bench-mesh
# shellcheck disable=SC2034 # read by lib.sh
BENCH_TOOLS=(iperf3 haproxy wrk openssl curl ss timeout ip nsenter setpriv)
# shellcheck disable=SC2034
BENCH_BINS=(skiff-router skiff-echo skiff-loadgen skiff-node-agent)
# shellcheck disable=SC2034
BENCH_MAKE=bench-mesh
ROUTER=$(realpath "${BENCH_ROUTER:-$BIN/skiff-router}") # before lib.sh moves to the work directory
[ -x "$ROUTER" ] || { echo "BENCH_ROUTER $ROUTER is not an executable" >&2; exit 2; }
# shellcheck source=hack/bench/lib.sh
source "$PWD/hack/bench/lib.sh"

# --- the pod: a netns, a veth pair, a cgroup with app and sidecar children ------
CG2=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
[ -n "$CG2" ] || die "no cgroup2 mount"
BPFFS=$(awk '$3 == "bpf" {print $2; exit}' /proc/mounts)
[ -n "$BPFFS" ] || die "no bpffs mount"
ID=$$
NS=skbm$ID
CG=$CG2/skiff-bench-mesh-$ID
PIN=$BPFFS/skiff-bench-mesh-$ID
HOST_IF=skbmh$((ID % 100000)) POD_IF=skbmp$((ID % 100000))
HOST=10.79.0.1 POD=10.79.0.2 VIP=10.96.79.1
mesh_cleanup() {
	"$BIN/skiff-node-agent" uninstall --pin-dir "$PIN" >/dev/null 2>&1 || true
	ip link del "$HOST_IF" 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	local c
	for c in app sidecar ""; do
		[ -d "$CG/$c" ] || continue
		# Processes still in it (a load tool stopped by a signal) first.
		while read -r p; do kill "$p" 2>/dev/null || true; done <"$CG/$c/cgroup.procs"
	done
	for i in $(seq 1 50); do
		rmdir "$CG/app" "$CG/sidecar" "$CG" 2>/dev/null || true
		[ -d "$CG" ] || break
		if [ "$i" = 30 ]; then # deaf to SIGTERM
			cat "$CG"/*/cgroup.procs "$CG/cgroup.procs" 2>/dev/null | while read -r p; do kill -9 "$p" 2>/dev/null || true; done
		fi
		sleep 0.1
	done
}
trap 'mesh_cleanup; cleanup' EXIT # the pod first: cleanup waits for every child

if ip -br addr | grep -q " $HOST/"; then
	die "$HOST is taken already (a bench run that did not clean up? ip -br addr; ip netns)"
fi
ip netns add "$NS"
ip link add "$HOST_IF" type veth peer name "$POD_IF" netns "$NS"
ip addr add "$HOST/30" dev "$HOST_IF"
ip link set "$HOST_IF" up
inpod() { nsenter --net="/run/netns/$NS" "$@"; }
inpod ip link set lo up
inpod ip addr add "$POD/30" dev "$POD_IF"
inpod ip link set "$POD_IF" up
inpod ip route add default via "$HOST"
mkdir -p "$CG/app" "$CG/sidecar"
# podrun SUB UID CMD...: CMD in the pod's netns and its cgroup SUB, as UID
# (0: root). It joins the cgroup before exec, so not one connect escapes
# the programs. podexec is the same in place of the calling (sub)shell:
# "podexec ... &" leaves CMD's PID in $! (sh, nsenter and setpriv exec).
podargs() {
	local sub=$1 uid=$2; shift 2
	local priv=()
	[ "$uid" = 0 ] || priv=(setpriv --reuid "$uid" --regid "$uid" --clear-groups)
	# shellcheck disable=SC2016 # $$ and $@ are the inner sh's
	PODARGS=(/bin/sh -c 'echo $$ > "$0" && exec "$@"' "$CG/$sub/cgroup.procs" nsenter --net="/run/netns/$NS" "${priv[@]}" "$@")
}
podrun() { podargs "$@"; "${PODARGS[@]}"; }
podexec() { podargs "$@"; exec "${PODARGS[@]}"; }

m0=$(machine_ticks); sleep 1; idle_busy=$(awk -v a="$m0" -v b="$(machine_ticks)" -v hz="$HZ" 'BEGIN {printf "%.2f", (b - a) / hz}')
if awk -v b="$idle_busy" 'BEGIN {exit !(b > 0.25)}'; then
	echo "bench: warning: the machine was $idle_busy cores busy before the bench started; figures will be low and noisy" >&2
fi

# --- servers ---------------------------------------------------------------------
WORKLOADS=(iperf http echo)
# The sidecar's own ports in the pod (redirected connections, metrics,
# health) are taken before free_port can hand them to haproxy S there.
printf '15001\n15090\n15021\n' >>"$DIR/ports.used"
declare -A SRV WF EL HA HBP HBT HS VP
for w in "${WORKLOADS[@]}"; do
	SRV[$w]=$(free_port) WF[$w]=$(free_port) EL[$w]=$(free_port) HA[$w]=$(free_port)
	HBP[$w]=$(free_port) HBT[$w]=$(free_port) HS[$w]=$(free_port) VP[$w]=$(free_port)
done
LINK=$(free_port)
log "servers on $HOST: iperf3 :${SRV[iperf]}, skiff-echo :${SRV[http]}, byte echo :${SRV[echo]}"
iperf3 -s -B "$HOST" -p "${SRV[iperf]}" >iperf3-server.log 2>&1 & PIDS+=($!)
"$BIN/skiff-echo" serve --listen "$HOST:${SRV[http]}" --name bench 2>skiff-echo.log & PIDS+=($!)
"$BIN/skiff-loadgen" echo --listen "$HOST:${SRV[echo]}" 2>loadgen-echo.log & PIDS+=($!)
for w in "${WORKLOADS[@]}"; do wait_listen "${SRV[$w]}"; done

# --- haproxy: B (plain and TLS binds), A (-> B over mTLS), S (in the pod) ----------
log "haproxy: S (pod) -> east; A -mTLS 1.3-> B -> server; B -> server"
certificates
haproxy_cfg() { # A|B|S
	printf 'global\n\tmaxconn 4000\n\tssl-default-bind-options ssl-min-ver TLSv1.3\n\tssl-default-server-options ssl-min-ver TLSv1.3\n'
	printf 'defaults\n\tmode tcp\n\tmaxconn 4000\n\ttimeout connect 5s\n\ttimeout client 2m\n\ttimeout server 2m\n'
	for w in "${WORKLOADS[@]}"; do
		case $1 in
		A) printf 'listen %s\n\tbind %s:%s\n\tserver b 127.0.0.1:%s ssl crt client.pem ca-file ca.pem verify required\n' "$w" "$HOST" "${HA[$w]}" "${HBT[$w]}" ;;
		B) printf 'listen %s\n\tbind %s:%s\n\tbind 127.0.0.1:%s ssl crt server.pem ca-file ca.pem verify required\n\tserver s %s:%s\n' \
			"$w" "$HOST" "${HBP[$w]}" "${HBT[$w]}" "$HOST" "${SRV[$w]}" ;;
		S) printf 'listen %s\n\tbind 127.0.0.1:%s\n\tserver e %s:%s\n' "$w" "${HS[$w]}" "$HOST" "${EL[$w]}" ;;
		esac
	done
}
for x in A B S; do
	haproxy_cfg $x >"haproxy-$x.cfg"
	haproxy -c -q -f "haproxy-$x.cfg" || die "haproxy-$x.cfg does not validate"
done
haproxy -db -f haproxy-B.cfg >haproxy-B.log 2>&1 & HB_PID=$!; PIDS+=($!)
haproxy -db -f haproxy-A.cfg >haproxy-A.log 2>&1 & HA_PID=$!; PIDS+=($!)
podexec sidecar 0 haproxy -db -f haproxy-S.cfg >haproxy-S.log 2>&1 & HS_PID=$!; PIDS+=($!)

# --- skiff: east (listeners, the sidecar's gateway) <- link dialled by west -----
log "skiff: east <- mTLS link dialled by west (connectors, and listeners of its own); the pod's sidecar, a member of east"
{
	printf 'name: east\ndataDir: east-data\nlinkAccess:\n  bind: %s:%s\nlisteners:\n' "$HOST" "$LINK"
	for w in "${WORKLOADS[@]}"; do printf '  - {address: %s, host: %s, port: %s}\n' "$w" "$HOST" "${EL[$w]}"; done
} >east.yaml
"$ROUTER" token issue --site-file east.yaml --out west-token.yaml --expires 15m >/dev/null
"$ROUTER" token issue --member --site-file east.yaml --out sidecar-token.yaml --expires 15m >/dev/null
{
	printf 'name: west\ndataDir: west-data\nlinks:\n  - {token: west-token.yaml, cost: 1}\nlisteners:\n'
	for w in "${WORKLOADS[@]}"; do printf '  - {address: %s, host: %s, port: %s}\n' "$w" "$HOST" "${WF[$w]}"; done
	printf 'connectors:\n'
	for w in "${WORKLOADS[@]}"; do printf '  - {address: %s, host: %s, port: %s}\n' "$w" "$HOST" "${SRV[$w]}"; done
} >west.yaml
chmod 711 "$DIR" # the sidecar (UID 1337) reaches its own directory in it
mkdir sidecar
{
	printf 'name: east\ndataDir: data\nlinks:\n  - {token: sidecar-token.yaml}\nlisteners:\n'
	for w in "${WORKLOADS[@]}"; do printf '  - {address: %s, host: %s, port: %s}\n' "$w" "$VIP" "${VP[$w]}"; done
} >sidecar/sidecar.yaml
cp sidecar-token.yaml sidecar/
chown -R 1337:1337 sidecar

declare -A MPORT
for s in east west; do
	MPORT[$s]=$(free_port)
	"$ROUTER" gateway --site-file $s.yaml --metrics-bind-address "127.0.0.1:${MPORT[$s]}" \
		--health-probe-bind-address 0 2>$s.log &
	PIDS+=($!)
	eval "${s^^}_PID=$!"
done

vips=()
for w in "${WORKLOADS[@]}"; do vips+=(--service "$VIP:${VP[$w]}"); done
"$BIN/skiff-node-agent" attach --site east --pin-dir "$PIN" --cgroup "$CG" "${vips[@]}" 2>node-agent.log ||
	{ cat node-agent.log >&2; die "skiff-node-agent attach failed"; }
podexec sidecar 1337 "$ROUTER" sidecar --site-file sidecar/sidecar.yaml \
	--metrics-bind-address 127.0.0.1:15090 --health-probe-bind-address 127.0.0.1:15021 2>sidecar.log &
SC_PID=$!; PIDS+=($!)
for _ in $(seq 1 300); do
	[ "$(inpod curl -s --max-time 1 http://127.0.0.1:15021/readyz 2>/dev/null)" = ok ] && break
	kill -0 "$SC_PID" 2>/dev/null || { tail -n 20 sidecar.log >&2; die "the sidecar exited"; }
	sleep 0.1
done
[ "$(inpod curl -s --max-time 1 http://127.0.0.1:15021/readyz)" = ok ] || { tail -n 20 sidecar.log >&2; die "the sidecar is not ready"; }
for x in haproxy-A:$HA_PID haproxy-B:$HB_PID haproxy-S:$HS_PID east:$EAST_PID west:$WEST_PID sidecar:$SC_PID; do
	kill -0 "${x#*:}" 2>/dev/null || { tail -n 5 "${x%%:*}.log" >&2; die "${x%%:*} exited"; }
done

ALL_PATHS=(direct far gw mesh hfar hgw hside)
read -r -a PATHS <<<"${BENCH_PATHS:-${ALL_PATHS[*]}}"
for p in "${PATHS[@]}"; do
	[[ " ${ALL_PATHS[*]} " == *" $p "* ]] || die "BENCH_PATHS: unknown path $p (known: ${ALL_PATHS[*]})"
done
LOADS=" ${BENCH_LOADS:-iperf1 iperf8 wrk1 wrk64 newconn hold} "
for l in $LOADS; do
	[[ " iperf1 iperf8 wrk1 wrk64 newconn hold " == *" $l "* ]] || die "BENCH_LOADS: unknown load $l"
done
load() { [[ $LOADS == *" $1 "* ]]; } # load NAME: whether NAME runs
declare -A ADDR # ADDR[path,workload]: what the pod's client dials
for w in "${WORKLOADS[@]}"; do
	ADDR[direct,$w]=$HOST:${SRV[$w]} ADDR[far,$w]=$HOST:${WF[$w]} ADDR[gw,$w]=$HOST:${EL[$w]} ADDR[mesh,$w]=$VIP:${VP[$w]}
	ADDR[hfar,$w]=$HOST:${HBP[$w]} ADDR[hgw,$w]=$HOST:${HA[$w]} ADDR[hside,$w]=127.0.0.1:${HS[$w]}
done
# PROCS[path]: the proxy processes on it, name:pid, in the order the bytes go.
declare -A PROCS=([far]="west:$WEST_PID" [gw]="east:$EAST_PID west:$WEST_PID"
	[mesh]="sidecar:$SC_PID east:$EAST_PID west:$WEST_PID" [hfar]="B:$HB_PID" [hgw]="A:$HA_PID B:$HB_PID"
	[hside]="S:$HS_PID east:$EAST_PID west:$WEST_PID")

answers() { # path: skiff-echo's name and a byte echo came back through it
	[ "$(podrun app 0 "$BIN/skiff-echo" get --url "http://${ADDR[$1,http]}/" --count 1 --timeout 1s 2>/dev/null | tr -d ' ')" = bench=1 ] &&
		podrun app 0 "$BIN/skiff-loadgen" hold --addr "${ADDR[$1,echo]}" --conns 1 --hold 0s --timeout 1s >/dev/null 2>&1
}
for path in "${PATHS[@]}"; do
	for _ in $(seq 1 150); do answers "$path" && break; sleep 0.1; done
	answers "$path" || die "the $path path does not answer end to end"
done
redirects() { # connect4 redirections so far (the pinned counters)
	"$BIN/skiff-node-agent" status --pin-dir "$PIN" 2>/dev/null | awk '/"connect4"/ {f = 1} f && /"redirected"/ {gsub(/[^0-9]/, "", $2); print $2; exit}'
}
# sample PHASE: the RSS of the sidecar, haproxy S and east (MEM), and
# where the sidecar's goes (GO: file-backed and anonymous pages, and the Go
# runtime's heap in use, heap kept from the OS but unused, stacks and
# goroutines from its /metrics), and east's goroutines.
declare -A MEM GO
rss() { awk -v f="${2:-VmRSS}:" '$1 == f {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
gateway_goroutines() { curl -s --max-time 2 "http://127.0.0.1:${MPORT[$1]}/metrics" 2>/dev/null | awk '$1 == "go_goroutines" {print $2}' || true; }
sample() {
	local m
	MEM[sidecar,$1]=$(rss "$SC_PID") MEM[S,$1]=$(rss "$HS_PID") MEM[east,$1]=$(rss "$EAST_PID")
	GO[egor,$1]=$(gateway_goroutines east)
	GO[file,$1]=$(rss "$SC_PID" RssFile) GO[anon,$1]=$(rss "$SC_PID" RssAnon)
	m=$(inpod curl -s --max-time 2 http://127.0.0.1:15090/metrics 2>/dev/null || true)
	GO[heap,$1]=$(awk '$1 == "go_memstats_heap_inuse_bytes" {printf "%.1f", $2 / 1048576}' <<<"$m")
	GO[kept,$1]=$(awk '$1 == "go_memstats_heap_idle_bytes" {i = $2} $1 == "go_memstats_heap_released_bytes" {r = $2}
		END {if (i != "") printf "%.1f", (i - r) / 1048576}' <<<"$m")
	GO[stack,$1]=$(awk '$1 == "go_memstats_stack_inuse_bytes" {printf "%.1f", $2 / 1048576}' <<<"$m")
	GO[gor,$1]=$(awk '$1 == "go_goroutines" {print $2}' <<<"$m")
}
sample idle

# --- measuring --------------------------------------------------------------------
declare -A RES CPUS REDIR # CPUS[run,path,process] = CPU seconds over the run
FAILED=0
# run KEY PATH OUT CMD...: runs a load in the pod's app cgroup, records the
# CPU seconds of each proxy process on the path meanwhile.
run() {
	local key=$1 path=$2 out=$3; shift 3
	local x before=() i=0 r0=""
	for x in ${PROCS[$path]:-}; do before+=("$(cpu_ticks "${x#*:}")"); done
	[ "$path" = mesh ] && r0=$(redirects)
	if ! podrun app 0 "$@" >"$out" 2>&1; then
		echo "bench: $key via $path failed: $*" >&2
		tail -n 5 "$out" >&2
		FAILED=1
		return 1
	fi
	for x in ${PROCS[$path]:-}; do
		CPUS[$key,$path,${x%%:*}]=$(awk -v a="${before[$i]}" -v b="$(cpu_ticks "${x#*:}")" -v hz="$HZ" 'BEGIN {printf "%.3f", (b - a) / hz}')
		i=$((i + 1))
	done
	[ -n "$r0" ] && REDIR[$key]=$(($(redirects) - r0))
	sleep 1 # let sockets in TIME_WAIT and the proxies' buffers settle between runs
	return 0
}

log "iperf3 from the pod: 1 and 8 streams, ${T}s each after a 1s omit (-O 1)"
for streams in 1 8; do
	load "iperf$streams" || continue
	for path in "${PATHS[@]}"; do
		out=iperf-$streams-$path.json a=${ADDR[$path,iperf]}
		if run "iperf$streams" "$path" "$out" timeout --foreground -k 5 $((T + 30)) iperf3 -c "${a%:*}" -p "${a##*:}" -t "$T" -O 1 -P "$streams" -J; then
			RES[iperf$streams,$path]=$(iperf_gbps "$out") RES[gb$streams,$path]=$(iperf_gb "$out")
		fi
	done
done

log "wrk GET against skiff-echo from the pod: 1 connection, 64 connections, and 64 with Connection: close (new connections/s)"
for path in "${PATHS[@]}"; do
	url=http://${ADDR[$path,http]}/
	if load wrk1 && run wrk1 "$path" "wrk1-$path.txt" timeout --foreground -k 5 $((T + 30)) wrk -t1 -c1 -d"${T}s" --latency "$url"; then
		RES[wrk1,$path]=$(wrk_rps "wrk1-$path.txt") RES[reqs1,$path]=$(wrk_reqs "wrk1-$path.txt")
		RES[p50,$path]=$(wrk_ms "wrk1-$path.txt" 50) RES[p99,$path]=$(wrk_ms "wrk1-$path.txt" 99)
	fi
	if load wrk64 && run wrk64 "$path" "wrk64-$path.txt" timeout --foreground -k 5 $((T + 30)) wrk -t2 -c64 -d"${T}s" --latency "$url"; then
		RES[wrk64,$path]=$(wrk_rps "wrk64-$path.txt") RES[reqs64,$path]=$(wrk_reqs "wrk64-$path.txt")
		RES[p50x64,$path]=$(wrk_ms "wrk64-$path.txt" 50) RES[p99x64,$path]=$(wrk_ms "wrk64-$path.txt" 99)
	fi
	if load newconn && run newconn "$path" "newconn-$path.txt" timeout --foreground -k 5 $((T + 30)) wrk -t2 -c64 -d"${T}s" -H "Connection: close" "$url"; then
		RES[newconn,$path]=$(wrk_rps "newconn-$path.txt") RES[conns,$path]=$(wrk_reqs "newconn-$path.txt")
	fi
	for f in wrk1 wrk64 newconn; do
		load "$f" || continue
		e=$(wrk_errors "$f-$path.txt")
		[ -z "$e" ] || { echo "  $f via $path: $e" >&2; FAILED=1; }
	done
done

# --- memory: idle connections held through the sidecar and through haproxy S -----
HOLD=$((T > 3 ? T : 3))
if load hold && [[ " ${PATHS[*]} " == *" mesh "* && " ${PATHS[*]} " == *" hside "* ]]; then
	log "memory: $HOLD_CONNS idle connections (one-byte round trip each) held ${HOLD}s through the sidecar and through haproxy S"
	sample loaded
	hold_idle hold-mesh.txt "sample hold" "sample after" \
		podexec app 0 timeout --foreground -k 5 $((HOLD + 60)) "$BIN/skiff-loadgen" hold --addr "${ADDR[mesh,echo]}" \
		--conns "$HOLD_CONNS" --hold "${HOLD}s" --timeout 30s
	sample_s() { MEM[S,$1]=$(rss "$HS_PID"); } # haproxy S alone
	hold_idle hold-hside.txt "sample_s hold" "sample_s after" \
		podexec app 0 timeout --foreground -k 5 $((HOLD + 60)) "$BIN/skiff-loadgen" hold --addr "${ADDR[hside,echo]}" \
		--conns "$HOLD_CONNS" --hold "${HOLD}s" --timeout 30s
fi

# --- report --------------------------------------------------------------------------
diff3() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {if (a == "" || b == "") print ""; else printf "%.3f", a - b}'; }
per() { # cpu-seconds count scale: CPU per unit, to 3 places ("" if unknown)
	awk -v c="${1:-}" -v n="${2:-}" -v s="$3" 'BEGIN {if (c == "" || n == "" || n + 0 == 0) print ""; else printf "%.3f", c * s / n}'
}
cpu_req() { per "${CPUS[wrk64,$1,$2]:-}" "${RES[reqs64,$1]:-}" 1000; } # path process: CPU ms per request at 64 connections
cpu_gb() { per "${CPUS[iperf1,$1,$2]:-}" "${RES[gb1,$1]:-}" 1; }       # path process: CPU s per GB, one stream

echo
echo "### The mesh path ($(date -u +%Y-%m-%d), BENCH_TIME=${T}s, $(nproc) CPUs, $idle_busy cores busy just before, $(idle_setup))"
echo
echo "| workload | unit |$(printf ' %s |' "${PATHS[@]}") mesh/hside | gw/hgw |"
echo "|---|---|$(printf -- '--:|%.0s' "${PATHS[@]}")--:|--:|"
for k in "iperf1;iperf3, 1 stream;Gbit/s" "iperf8;iperf3, 8 streams;Gbit/s" "wrk1;HTTP GET, 1 connection;req/s" \
	"p50;... p50 latency;ms" "p99;... p99 latency;ms" "wrk64;HTTP GET, 64 connections;req/s" "p50x64;... p50 latency;ms" \
	"p99x64;... p99 latency;ms" "newconn;new connections (Connection: close, 64);conn/s"; do
	IFS=';' read -r m label unit <<<"$k"
	line="| $label | $unit |"
	for path in "${PATHS[@]}"; do line+=" ${RES[$m,$path]:-ERR} |"; done
	echo "$line $(ratio "${RES[$m,mesh]:-}" "${RES[$m,hside]:-}") | $(ratio "${RES[$m,gw]:-}" "${RES[$m,hgw]:-}") |"
done
echo
echo "direct: pod -> server; far: pod -> west's own listener -> server; gw: pod -> east -> link -> west -> server;"
echo "mesh: pod -eBPF-> sidecar -member link-> east -> link -> west -> server; hfar: pod -> haproxy B -> server;"
echo "hgw: pod -> haproxy A -mTLS-> haproxy B -> server; hside: pod -> haproxy S (plain TCP) -> east -> link -> west -> server."

echo
echo "### CPU per request (wrk, 64 connections; ms) and per GB (iperf3, 1 stream; s), per process"
echo
echo "| path | process | CPU ms / request | CPU s / GB |"
echo "|---|---|--:|--:|"
for path in far gw mesh hfar hgw hside; do
	for x in ${PROCS[$path]}; do
		n=${x%%:*}
		echo "| $path | $n | $(cpu_req "$path" "$n") | $(cpu_gb "$path" "$n") |"
	done
done

# The budget: p50 (1 connection) added by each hop, from the difference of
# two paths of this run; CPU per request and per GB of the hop's process.
echo
echo "### Budget per hop (p50 at 1 connection added by the hop, from two paths of this run; CPU of the hop's process)"
echo
echo "| hop | skiff p50 added, ms | haproxy p50 added, ms | skiff CPU ms / req | haproxy CPU ms / req | skiff CPU s / GB | haproxy CPU s / GB |"
echo "|---|--:|--:|--:|--:|--:|--:|"
per_conn=$(awk -v r="${REDIR[newconn]:-}" -v c="${RES[conns,mesh]:-}" 'BEGIN {if (r == "" || c + 0 == 0) print "?"; else printf "%.2f", r / c}')
per_req=$(awk -v r="${REDIR[wrk64]:-}" -v c="${RES[reqs64,mesh]:-}" 'BEGIN {if (r == "" || c + 0 == 0) print "?"; else printf "%.5f", r / c}')
echo "| eBPF redirect | at connect only: $per_conn redirections per new connection, $per_req per kept-alive request (its ns per connection: make bench-ebpf) | - | - | - | - | - |"
SIDE_P50=$(diff3 "${RES[p50,mesh]:-}" "${RES[p50,gw]:-}") HSIDE_P50=$(diff3 "${RES[p50,hside]:-}" "${RES[p50,gw]:-}")
echo "| sidecar (skiff: with its mTLS member link; haproxy S: plain TCP) | $SIDE_P50 | $HSIDE_P50 | $(cpu_req mesh sidecar) | $(cpu_req hside S) | $(cpu_gb mesh sidecar) | $(cpu_gb hside S) |"
echo "| gateway + link (east, the mTLS link) | $(diff3 "${RES[p50,gw]:-}" "${RES[p50,far]:-}") | $(diff3 "${RES[p50,hgw]:-}" "${RES[p50,hfar]:-}") | $(cpu_req gw east) | $(cpu_req hgw A) | $(cpu_gb gw east) | $(cpu_gb hgw A) |"
echo "| far gateway (west) | $(diff3 "${RES[p50,far]:-}" "${RES[p50,direct]:-}") | $(diff3 "${RES[p50,hfar]:-}" "${RES[p50,direct]:-}") | $(cpu_req gw west) | $(cpu_req hgw B) | $(cpu_gb gw west) | $(cpu_gb hgw B) |"
echo
echo "p50 of a hop: sidecar = mesh - gw (haproxy: hside - gw); gateway + link = gw - far (hgw - hfar); far gateway = far - direct"
echo "(hfar - direct). CPU of the gateways from the gw and hgw runs: the far gateway's share includes its end of the link."

echo
echo "### Sidecar RSS (MiB; $HOLD_CONNS idle connections, one-byte round trip each, held ${HOLD}s)"
echo
echo "| process | idle, at start | after the loads | holding $HOLD_CONNS | 3 s after closing |"
echo "|---|--:|--:|--:|--:|"
for n in sidecar S; do
	label=$n; [ "$n" = S ] && label="haproxy S"
	echo "| $label | ${MEM[$n,idle]:-ERR} | ${MEM[$n,loaded]:-ERR} | ${MEM[$n,hold]:-ERR} | ${MEM[$n,after]:-ERR} |"
done
for k in "file;sidecar: file-backed (its binary's pages)" "anon;sidecar: anonymous" "heap;sidecar: Go heap in use" \
	"kept;sidecar: Go heap free, not yet returned" "stack;sidecar: goroutine stacks" "gor;sidecar: goroutines (count)"; do
	IFS=';' read -r m label <<<"$k"
	echo "| $label | ${GO[$m,idle]:-ERR} | ${GO[$m,loaded]:-ERR} | ${GO[$m,hold]:-ERR} | ${GO[$m,after]:-ERR} |"
done
echo "| east gateway (the connections in transit) | ${MEM[east,idle]:-ERR} | ${MEM[east,loaded]:-ERR} | ${MEM[east,hold]:-ERR} | ${MEM[east,after]:-ERR} |"
echo "| east gateway: goroutines (count) | ${GO[egor,idle]:-ERR} | ${GO[egor,loaded]:-ERR} | ${GO[egor,hold]:-ERR} | ${GO[egor,after]:-ERR} |"

echo
echo "### Targets"
echo
echo "| target | measured | met |"
echo "|---|---|---|"
echo "| sidecar hop p50 <= haproxy hop p50 | ${SIDE_P50:-?} ms against ${HSIDE_P50:-?} ms | $(verdict "$SIDE_P50" "<=" "$HSIDE_P50") |"
echo "| mesh req/s (64 connections) >= hside | $(ratio "${RES[wrk64,mesh]:-}" "${RES[wrk64,hside]:-}")x | $(verdict "$(ratio "${RES[wrk64,mesh]:-}" "${RES[wrk64,hside]:-}")" ">=" 1) |"
echo "| sidecar CPU per request <= haproxy S | $(cpu_req mesh sidecar) against $(cpu_req hside S) ms | $(verdict "$(cpu_req mesh sidecar)" "<=" "$(cpu_req hside S)") |"
echo "| sidecar RSS idle < 20 MiB | ${MEM[sidecar,idle]:-?} MiB | $(verdict "${MEM[sidecar,idle]:-}" "<" 20) |"
echo "| sidecar RSS with $HOLD_CONNS connections < 40 MiB | ${MEM[sidecar,hold]:-?} MiB | $(verdict "${MEM[sidecar,hold]:-}" "<" 40) |"
echo "| gateway chain, 1 stream >= 1.2x haproxy's | $(ratio "${RES[iperf1,gw]:-}" "${RES[iperf1,hgw]:-}")x | $(verdict "$(ratio "${RES[iperf1,gw]:-}" "${RES[iperf1,hgw]:-}")" ">=" 1.2) |"
echo "| gateway chain, 8 streams >= 1.2x haproxy's | $(ratio "${RES[iperf8,gw]:-}" "${RES[iperf8,hgw]:-}")x | $(verdict "$(ratio "${RES[iperf8,gw]:-}" "${RES[iperf8,hgw]:-}")" ">=" 1.2) |"
echo "| gateway chain, p50 at 1 connection <= 1.0x haproxy's | $(ratio "${RES[p50,gw]:-}" "${RES[p50,hgw]:-}")x | $(verdict "$(ratio "${RES[p50,gw]:-}" "${RES[p50,hgw]:-}")" "<=" 1) |"
echo
echo "tools: $(iperf3 --version | head -n 1), $(haproxy -v | head -n 1 | cut -d' ' -f1-3), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
[ "$FAILED" = 0 ] || die "some runs failed; their output is above"
