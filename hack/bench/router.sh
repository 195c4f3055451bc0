#!/usr/bin/env bash
# make bench: skiff's data plane against direct loopback and against haproxy,
# measured in one run on this machine. Needs bin/ (make build) and the Debian
# tools iperf3, haproxy, wrk, redis-server, redis-tools, openssl
# (hack/install-deps.sh installs them).
#
# Three paths per workload, all on 127.0.0.1:
#   direct   client -> server
#   haproxy  client -> haproxy A (mode tcp) -mTLS 1.3, ECDSA P-256-> haproxy B -> server
#   skiff    client -> east gateway listener -mTLS link-> west gateway connector -> server
# Workloads: iperf3 (1 and 8 streams), wrk against skiff-echo (1 and 64
# connections, and new connections per second with "Connection: close"),
# redis-benchmark (SET, GET), a 1 KiB POST over one connection alone and
# beside one iperf3 stream through the same path, at full speed and paced
# (twice); then BENCH_CONNS idle
# connections held through
# each proxy pair, twice, while the proxies' RSS (and the gateways'
# goroutines, from /metrics) is sampled. While each load runs, the CPU time
# of each proxy process is read from /proc. One pair of proxies serves every
# workload, one listener per workload. Prints Markdown tables for
# docs/benchmarks.md; exits 1 if a run failed.
#
# Environment:
#   BENCH_TIME    seconds per run (default 5); redis-benchmark sends 20,000
#                 requests per second of it
#   BENCH_CONNS   idle connections for the memory check (default 1000)
#   BENCH_SETTLE  if set, wait this many seconds more and sample memory again
#                 (Go returns freed memory after two GC cycles; an idle
#                 gateway runs one every 2 minutes, so 260 shows it)
#   BENCH_KEEP    if set, keep the work directory (logs, raw outputs)
#   BENCH_PACE    the paced bulk stream's rate in Gbit/s beside the small
#                 request (default: half the lower of haproxy's and
#                 skiff's one-stream rates in the run)
#   BENCH_MAX_PROCS  the gateways' --max-procs (default 0: Go's default,
#                 one per core)
#   BENCH_HALT_POLL_NS  if set (root), write it to the guest's
#                 /sys/module/haltpoll/parameters/guest_halt_poll_ns for the
#                 run and restore the old value at the end. On a KVM guest
#                 with the haltpoll cpuidle driver and this at 0, every
#                 wake-up of an idle vCPU halts and exits to the host, about
#                 40 us per process hop at 1 connection (docs/benchmarks.md,
#                 "Idle vCPUs"); the kernel's default is 200000. The value in
#                 force is printed with the results either way.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$PWD/bin
HOLD_CONNS=${BENCH_CONNS:-1000}
SETTLE=${BENCH_SETTLE:-0}
[[ $HOLD_CONNS =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_CONNS must be a positive integer, got $HOLD_CONNS" >&2; exit 2; }
[[ $SETTLE =~ ^[0-9]+$ ]] || { echo "BENCH_SETTLE must be a whole number of seconds, got $SETTLE" >&2; exit 2; }

BENCH_NAME=skiff-bench
# shellcheck disable=SC2034 # read by lib.sh
BENCH_TOOLS=(iperf3 haproxy wrk redis-server redis-benchmark redis-cli openssl curl ss timeout)
# shellcheck disable=SC2034
BENCH_BINS=(skiff-router skiff-echo skiff-loadgen)
# shellcheck disable=SC2034
BENCH_MAKE=bench
# shellcheck source=hack/bench/lib.sh
source "$PWD/hack/bench/lib.sh"

wait_path() { # name http-port echo-port redis-port: until all three answer end to end
	for _ in $(seq 1 150); do
		if [ "$("$BIN/skiff-echo" get --url "http://127.0.0.1:$2/" --count 1 --timeout 1s 2>/dev/null | tr -d ' ')" = bench=1 ] &&
			"$BIN/skiff-loadgen" hold --addr "127.0.0.1:$3" --conns 1 --hold 0s --timeout 1s >/dev/null 2>&1 &&
			[ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$4" ping 2>/dev/null)" = PONG ]; then
			return 0
		fi
		sleep 0.1
	done
	die "$1 path does not answer end to end"
}

m0=$(machine_ticks); sleep 1; idle_busy=$(awk -v a="$m0" -v b="$(machine_ticks)" -v hz="$HZ" 'BEGIN {printf "%.2f", (b - a) / hz}')
if awk -v b="$idle_busy" 'BEGIN {exit !(b > 0.25)}'; then
	echo "bench: warning: the machine was $idle_busy cores busy before the bench started; figures will be low and noisy" >&2
fi

# --- servers -----------------------------------------------------------------
WORKLOADS=(iperf http redis echo)
declare -A SRV HA HB SK
for w in "${WORKLOADS[@]}"; do SRV[$w]=$(free_port); HA[$w]=$(free_port); HB[$w]=$(free_port); SK[$w]=$(free_port); done
LINK=$(free_port)

log "servers: iperf3 :${SRV[iperf]}, skiff-echo :${SRV[http]}, redis-server :${SRV[redis]}, byte echo :${SRV[echo]}"
iperf3 -s -B 127.0.0.1 -p "${SRV[iperf]}" >iperf3-server.log 2>&1 & PIDS+=($!)
"$BIN/skiff-echo" serve --listen "127.0.0.1:${SRV[http]}" --name bench 2>skiff-echo.log & PIDS+=($!)
redis-server --bind 127.0.0.1 --port "${SRV[redis]}" --save "" --appendonly no --dir "$DIR" >redis.log 2>&1 & PIDS+=($!)
"$BIN/skiff-loadgen" echo --listen "127.0.0.1:${SRV[echo]}" 2>loadgen-echo.log & PIDS+=($!)
for w in "${WORKLOADS[@]}"; do wait_listen "${SRV[$w]}"; done

# --- haproxy A -> mTLS -> haproxy B --------------------------------------------
log "certificates (openssl: ECDSA P-256 CA, server and client) and haproxy A -> mTLS 1.3 -> haproxy B"
certificates

haproxy_cfg() { # A|B
	cat <<CFG
global
	maxconn 4000
	ssl-default-bind-options ssl-min-ver TLSv1.3
	ssl-default-server-options ssl-min-ver TLSv1.3
defaults
	mode tcp
	maxconn 4000
	timeout connect 5s
	timeout client 2m
	timeout server 2m
CFG
	for w in "${WORKLOADS[@]}"; do
		if [ "$1" = A ]; then
			printf 'listen %s\n\tbind 127.0.0.1:%s\n\tserver b 127.0.0.1:%s ssl crt client.pem ca-file ca.pem verify required\n' \
				"$w" "${HA[$w]}" "${HB[$w]}"
		else
			printf 'listen %s\n\tbind 127.0.0.1:%s ssl crt server.pem ca-file ca.pem verify required\n\tserver s 127.0.0.1:%s\n' \
				"$w" "${HB[$w]}" "${SRV[$w]}"
		fi
	done
}
haproxy_cfg A >haproxy-a.cfg
haproxy_cfg B >haproxy-b.cfg
for x in a b; do haproxy -c -q -f "haproxy-$x.cfg" || die "haproxy-$x.cfg does not validate"; done
haproxy -db -f haproxy-b.cfg >haproxy-b.log 2>&1 & HB_PID=$!; PIDS+=($!)
haproxy -db -f haproxy-a.cfg >haproxy-a.log 2>&1 & HA_PID=$!; PIDS+=($!)

# --- skiff: east gateway -> link -> west gateway ------------------------------
log "skiff: east (listeners) <- mTLS link dialled by west (connectors)"
{
	printf 'name: east\ndataDir: east-data\nlinkAccess:\n  bind: 127.0.0.1:%s\nlisteners:\n' "$LINK"
	for w in "${WORKLOADS[@]}"; do printf '  - {address: %s, host: 127.0.0.1, port: %s}\n' "$w" "${SK[$w]}"; done
} >east.yaml
"$BIN/skiff-router" token issue --site-file east.yaml --out west-token.yaml --expires 15m >/dev/null
{
	printf 'name: west\ndataDir: west-data\nlinks:\n  - {token: west-token.yaml, cost: 1}\nconnectors:\n'
	for w in "${WORKLOADS[@]}"; do printf '  - {address: %s, host: 127.0.0.1, port: %s}\n' "$w" "${SRV[$w]}"; done
} >west.yaml
start_gateways
wait_path haproxy "${HA[http]}" "${HA[echo]}" "${HA[redis]}"
wait_path skiff "${SK[http]}" "${SK[echo]}" "${SK[redis]}"

PATHS=(direct haproxy skiff)
declare -A PORT # PORT[path,workload]
for w in "${WORKLOADS[@]}"; do PORT[direct,$w]=${SRV[$w]}; PORT[haproxy,$w]=${HA[$w]}; PORT[skiff,$w]=${SK[$w]}; done
declare -A PROCS=([haproxy]="$HA_PID $HB_PID" [skiff]="$EAST_PID $WEST_PID")

# --- measuring ------------------------------------------------------------------
declare -A RES CPU BUSY # RES[metric,path] = figure; CPU[run,path] = "0.71 + 0.65"; BUSY[run,path] = cores busy
FAILED=0

# run KEY PATH OUT CMD...: runs a load, records the proxies' CPU (cores) meanwhile.
run() {
	local key=$1 path=$2 out=$3; shift 3
	local pids=${PROCS[$path]:-} p t0 t1 m0 before=() cores=()
	for p in $pids; do before+=("$(cpu_ticks "$p")"); done
	m0=$(machine_ticks)
	t0=$(now_us)
	if ! "$@" >"$out" 2>&1; then
		echo "bench: $key via $path failed: $*" >&2
		tail -n 5 "$out" >&2
		FAILED=1
		return 1
	fi
	t1=$(now_us)
	BUSY[$key,$path]=$(awk -v a="$m0" -v b="$(machine_ticks)" -v hz="$HZ" -v us=$((t1 - t0)) \
		'BEGIN {printf "%.2f", (b - a) / hz / (us / 1e6)}')
	local i=0
	for p in $pids; do
		cores+=("$(awk -v a="${before[$i]}" -v b="$(cpu_ticks "$p")" -v hz="$HZ" -v us=$((t1 - t0)) \
			'BEGIN {printf "%.2f", (b - a) / hz / (us / 1e6)}')")
		i=$((i + 1))
	done
	[ -n "$pids" ] && CPU[$key,$path]="${cores[0]} + ${cores[1]}"
	sleep 1 # let sockets in TIME_WAIT and the proxies' buffers settle between runs
	return 0
}

redis_rps() { tr '\r' '\n' <"$1" | awk -v t="$2:" '$1 == t && /requests per second/ {printf "%.0f", $2}' | tail -n 1; }

log "iperf3: 1 and 8 streams, ${T}s each after a 1s omit (-O 1)"
for streams in 1 8; do
	for path in "${PATHS[@]}"; do
		out=iperf-$streams-$path.json
		if run "iperf$streams" "$path" "$out" timeout --foreground -k 5 $((T + 30)) iperf3 -c 127.0.0.1 -p "${PORT[$path,iperf]}" -t "$T" -O 1 -P "$streams" -J; then
			RES[iperf$streams,$path]=$(iperf_gbps "$out")
		fi
	done
done

log "wrk GET against skiff-echo: 1 connection, 64 connections, and 64 with Connection: close (new connections/s)"
for path in "${PATHS[@]}"; do
	url=http://127.0.0.1:${PORT[$path,http]}/
	if run wrk1 "$path" "wrk1-$path.txt" timeout --foreground -k 5 $((T + 30)) wrk -t1 -c1 -d"${T}s" --latency "$url"; then
		RES[wrk1,$path]=$(wrk_rps "wrk1-$path.txt")
		RES[p50,$path]=$(wrk_ms "wrk1-$path.txt" 50)
		RES[p99,$path]=$(wrk_ms "wrk1-$path.txt" 99)
	fi
	if run wrk64 "$path" "wrk64-$path.txt" timeout --foreground -k 5 $((T + 30)) wrk -t2 -c64 -d"${T}s" --latency "$url"; then
		RES[wrk64,$path]=$(wrk_rps "wrk64-$path.txt")
		RES[p50x64,$path]=$(wrk_ms "wrk64-$path.txt" 50)
		RES[p99x64,$path]=$(wrk_ms "wrk64-$path.txt" 99)
	fi
	if run newconn "$path" "newconn-$path.txt" timeout --foreground -k 5 $((T + 30)) wrk -t2 -c64 -d"${T}s" -H "Connection: close" "$url"; then
		RES[newconn,$path]=$(wrk_rps "newconn-$path.txt")
	fi
	for f in wrk1 wrk64 newconn; do
		e=$(wrk_errors "$f-$path.txt")
		[ -z "$e" ] || echo "  $f via $path: $e" >&2
	done
done

# A small request beside a bulk stream: wrk POSTs 1 KiB (skiff-echo sends
# it back) over one connection, alone, then while one iperf3 stream runs
# through the same path, at full speed and paced at PACE Gbit/s; twice,
# and each figure is the lower of its two runs (a stall of the host in one
# run would decide the ratio otherwise). Through skiff both share the
# gateways and the link's multiplexer; through haproxy each has its own TLS
# connection; direct, both only share the machine. At full speed the bulk
# stream takes every core of a small machine, so the request's p99 grows
# on every path, direct too: that run shows the machine. The paced stream
# leaves the cores room, so what grows is what the path adds: the
# data-path issue bounds skiff's p99 beside it at 2x its p99 alone. PACE
# (BENCH_PACE, or half the lower of haproxy's and skiff's one-stream rates
# above) is one rate for every path.
printf 'wrk.method = "POST"\nwrk.body = string.rep("x", 1024)\n' >post1k.lua
lower() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {if (a == "") print b; else if (b == "") print a; else print (a + 0 < b + 0) ? a : b}'; }
PACE=${BENCH_PACE:-$(awk -v h="${RES[iperf1,haproxy]:-}" -v s="${RES[iperf1,skiff]:-}" \
	'BEGIN {m = (h == "" || (s != "" && s + 0 < h + 0)) ? s : h; if (m == "") m = 2; printf "%.1f", m / 2 < 0.1 ? 0.1 : m / 2}')}
[[ $PACE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "BENCH_PACE must be a rate in Gbit/s, got $PACE"
# post KEY PATH ROUND [RATE]: the POST over one connection, alone or while
# one iperf3 stream runs through the same path at RATE Gbit/s (0: full
# speed); records KEYp50, KEYp99 and, beside a stream, its rate as bulkKEY.
post() {
	local key=$1 path=$2 round=$3 rate=${4:-} out=$1-$2-$3.txt bulk=""
	if [ -n "$rate" ]; then
		timeout --foreground -k 5 $((T + 32)) iperf3 -c 127.0.0.1 -p "${PORT[$path,iperf]}" -b "${rate}G" -t $((T + 2)) -J \
			>"bulk-$key-$path-$round.json" 2>&1 &
		bulk=$!
		sleep 1 # the bulk stream is under way
	fi
	if run "$key" "$path" "$out" timeout --foreground -k 5 $((T + 30)) wrk -t1 -c1 -d"${T}s" --latency -s post1k.lua \
		"http://127.0.0.1:${PORT[$path,http]}/"; then
		RES[${key}p50,$path]=$(lower "${RES[${key}p50,$path]:-}" "$(wrk_ms "$out" 50)")
		RES[${key}p99,$path]=$(lower "${RES[${key}p99,$path]:-}" "$(wrk_ms "$out" 99)")
	fi
	if [ -n "$bulk" ]; then
		if wait "$bulk"; then
			RES[bulk$key,$path]=$(lower "${RES[bulk$key,$path]:-}" "$(iperf_gbps "bulk-$key-$path-$round.json")")
		else
			echo "bench: the bulk stream via $path ($key) failed" >&2
			tail -n 5 "bulk-$key-$path-$round.json" >&2
			FAILED=1
		fi
	fi
	e=$(wrk_errors "$out")
	[ -z "$e" ] || echo "  $key via $path: $e" >&2
}
log "1 KiB POST over 1 connection, ${T}s alone, beside one iperf3 stream at full speed and beside one paced at $PACE Gbit/s, through the same path, twice"
for round in 1 2; do
	for path in "${PATHS[@]}"; do
		post small "$path" "$round"
		post beside "$path" "$round" 0
		post paced "$path" "$round" "$PACE"
	done
done
for path in "${PATHS[@]}"; do
	RES[growth,$path]=$(ratio "${RES[besidep99,$path]:-}" "${RES[smallp99,$path]:-}")
	RES[pgrowth,$path]=$(ratio "${RES[pacedp99,$path]:-}" "${RES[smallp99,$path]:-}")
done

N=$((20000 * T))
log "redis-benchmark -t set,get -n $N -c 50"
for path in "${PATHS[@]}"; do
	if run redis "$path" "redis-$path.txt" timeout --foreground -k 5 $((T * 10 + 60)) redis-benchmark -h 127.0.0.1 -p "${PORT[$path,redis]}" -t set,get -n "$N" -c 50 -q; then
		RES[set,$path]=$(redis_rps "redis-$path.txt" SET)
		RES[get,$path]=$(redis_rps "redis-$path.txt" GET)
	fi
done

# --- memory: idle connections held through each proxy pair --------------------
declare -A MEM GOR # MEM[process,phase] = RSS MiB; GOR[process,phase] = goroutines (skiff)
declare -A MEMPROCS=([haproxy]="A:$HA_PID B:$HB_PID" [skiff]="east:$EAST_PID west:$WEST_PID")
goroutines() { curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | awk '$1 == "go_goroutines" {print $2}'; }
sample() { # path phase
	local x
	for x in ${MEMPROCS[$1]}; do
		MEM[$1 ${x%%:*},$2]=$(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/${x#*:}/status" 2>/dev/null || true)
		[ "$1" = skiff ] && GOR[$1 ${x%%:*},$2]=$(goroutines "${MPORT[${x%%:*}]}" || true)
	done
	return 0
}
HOLD=$((T > 3 ? T : 3))
PHASES=(before hold1 after1 hold2 after2)
log "memory: $HOLD_CONNS idle connections (one-byte round trip each) held ${HOLD}s through each proxy pair, two rounds"
for path in haproxy skiff; do
	sample "$path" before
	for round in 1 2; do
		hold_idle "hold-$path-$round.txt" "sample $path hold$round" "sample $path after$round" \
			timeout --foreground -k 5 $((HOLD + 60)) "$BIN/skiff-loadgen" hold --addr "127.0.0.1:${PORT[$path,echo]}" \
			--conns "$HOLD_CONNS" --hold "${HOLD}s" --timeout 30s
	done
done
if [ "$SETTLE" -gt 0 ]; then
	log "memory: waiting ${SETTLE}s more (BENCH_SETTLE) for the Go runtime to collect and return memory"
	sleep "$SETTLE"
	PHASES+=(settled)
	sample haproxy settled
	sample skiff settled
fi

# --- report -------------------------------------------------------------------------
row() { # metric label unit [op target target-label]
	local d=${RES[$1,direct]:-} h=${RES[$1,haproxy]:-} s=${RES[$1,skiff]:-} tgt="" ok=""
	if [ $# -gt 3 ]; then tgt="$4 $6"; ok=$(verdict "$s" "$4" "$5"); fi
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$2" "$3" "${d:-ERR}" "${h:-ERR}" "${s:-ERR}" \
		"$(ratio "$s" "$d")" "$(ratio "$s" "$h")" "$tgt" "$ok"
}

echo
echo "### Throughput and latency ($(date -u +%Y-%m-%d), BENCH_TIME=${T}s, $(nproc) CPUs, $idle_busy cores busy just before, $(idle_setup))"
echo
echo "| workload | unit | direct | haproxy | skiff | skiff/direct | skiff/haproxy | target | skiff meets |"
echo "|---|---|--:|--:|--:|--:|--:|---|---|"
row iperf1 "iperf3, 1 stream" Gbit/s ">=" 2.8 "2.8"
row iperf8 "iperf3, 8 streams" Gbit/s
row wrk1 "HTTP GET, 1 connection" req/s
row p50 "... p50 latency" ms "<=" 0.25 "0.25"
row p99 "... p99 latency" ms
row wrk64 "HTTP GET, 64 connections" req/s ">=" 14000 "14k"
row p50x64 "... p50 latency" ms
row p99x64 "... p99 latency" ms
row newconn "new connections (Connection: close, 64)" conn/s ">=" 5000 "5k"
row set "redis SET (-c 50)" req/s
row get "redis GET (-c 50)" req/s
row smallp50 "1 KiB POST, 1 connection, alone: p50" ms
row smallp99 "... p99" ms
row besidep50 "... beside one iperf3 stream at full speed: p50" ms
row besidep99 "... p99" ms
row growth "... p99 beside / p99 alone (the machine's cores are taken)" x
row bulkbeside "... the iperf3 stream meanwhile (the lower run)" Gbit/s
row pacedp50 "... beside one iperf3 stream paced at $PACE Gbit/s: p50" ms
row pacedp99 "... p99" ms
row pgrowth "... p99 beside / p99 alone" x "<=" 2 "2"
row bulkpaced "... the iperf3 stream meanwhile (the lower run)" Gbit/s

issue_target() { # label metric op target: skiff/haproxy of metric against the data-path issue's target
	local r
	r=$(ratio "${RES[$2,skiff]:-}" "${RES[$2,haproxy]:-}")
	echo "| $1 | ${r}x | $(verdict "$r" "$3" "$4") |"
}
echo
echo "### Against the data-path issue's targets (ratios of this run)"
echo
echo "| target | measured | met |"
echo "|---|---|---|"
issue_target "1 stream >= 1.2x haproxy's chain" iperf1 ">=" 1.2
issue_target "8 streams >= 1.2x haproxy's chain" iperf8 ">=" 1.2
issue_target "p50 at 1 connection <= 1.0x haproxy's chain" p50 "<=" 1
echo "| 1 KiB POST p99 beside a bulk stream paced at $PACE Gbit/s <= 2x alone | ${RES[pgrowth,skiff]:-?}x (haproxy's chain ${RES[pgrowth,haproxy]:-?}x, direct ${RES[pgrowth,direct]:-?}x) | $(verdict "${RES[pgrowth,skiff]:-}" "<=" 2) |"

echo
echo "### CPU while each load ran (cores; the machine has $(nproc), shared by clients, servers and proxies)"
echo
echo "| run | haproxy A + B | skiff east + west | machine busy: direct | haproxy | skiff |"
echo "|---|--:|--:|--:|--:|--:|"
for k in "iperf1:iperf3, 1 stream" "iperf8:iperf3, 8 streams" "wrk1:HTTP, 1 connection" "wrk64:HTTP, 64 connections" \
	"newconn:new connections" "redis:redis SET+GET" "beside:1 KiB POST beside one iperf3 stream at full speed" \
	"paced:1 KiB POST beside one iperf3 stream paced at $PACE Gbit/s"; do
	r=${k%%:*}
	printf '| %s | %s | %s | %s | %s | %s |\n' "${k#*:}" "${CPU[$r,haproxy]:-ERR}" "${CPU[$r,skiff]:-ERR}" \
		"${BUSY[$r,direct]:-ERR}" "${BUSY[$r,haproxy]:-ERR}" "${BUSY[$r,skiff]:-ERR}"
done

echo
echo "### RSS with $HOLD_CONNS idle connections held (MiB; skiff target: < 100 MiB per gateway)"
echo
declare -A LABEL=([before]=before [hold1]="holding (1)" [after1]="3 s after closing" [hold2]="holding (2)" [after2]="3 s after closing"
	[settled]="${SETTLE} s later")
hdr="| process |" sep="|---|"
for ph in "${PHASES[@]}"; do hdr+=" ${LABEL[$ph]} |"; sep+="--:|"; done
echo "$hdr skiff meets |"
echo "$sep---|"
for proc in "haproxy A" "haproxy B" "skiff east" "skiff west"; do
	line="| $proc |" peak=0
	for ph in "${PHASES[@]}"; do
		v=${MEM[$proc,$ph]:-ERR}
		line+=" $v |"
		if [[ $ph == hold* ]]; then
			peak=$(awk -v a="$peak" -v b="$v" 'BEGIN {print (a == "" || b == "ERR") ? "" : (b > a ? b : a)}')
		fi
	done
	ok=""
	[[ $proc == skiff* ]] && ok=$(verdict "$peak" "<" 100)
	echo "$line $ok |"
done
for proc in "skiff east" "skiff west"; do
	line="| $proc goroutines |"
	for ph in "${PHASES[@]}"; do line+=" ${GOR[$proc,$ph]:-ERR} |"; done
	echo "$line |"
done
echo
echo "tools: $(iperf3 --version | head -n 1), $(haproxy -v | head -n 1 | cut -d' ' -f1-3), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), $(redis-server --version | cut -d' ' -f1-3)"
[ "$FAILED" = 0 ] || die "some runs failed; their output is above"
